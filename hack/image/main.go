// Command image writes Faro's container image as an OCI image layout
// archive, without a container daemon. `make image` runs it on a static
// faro binary and the example plugins.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/faro-dev/faro/internal/imagebuild"
)

func main() {
	var opts imagebuild.Options
	flag.StringVar(&opts.Binary, "binary", "", "static faro binary (CGO_ENABLED=0)")
	plugins := flag.String("plugins", "", "folder of .wasm plugins to install under /plugins")
	flag.StringVar(&opts.CACerts, "ca-certs", "", "CA bundle to install as /etc/ssl/certs/ca-certificates.crt (optional)")
	flag.StringVar(&opts.Arch, "arch", "amd64", "architecture of the binary")
	out := flag.String("out", "bin/faro-image.tar", "archive to write")
	ref := flag.String("tag", "faro:latest", "image reference recorded in the archive")
	flag.Parse()
	if err := run(opts, *plugins, *out, *ref); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(opts imagebuild.Options, plugins, out, ref string) error {
	if plugins != "" {
		wasm, err := filepath.Glob(filepath.Join(plugins, "*.wasm"))
		if err != nil {
			return err
		}
		opts.Plugins = wasm
	}
	img, err := imagebuild.Build(opts)
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	if err := imagebuild.WriteOCIArchive(w, img, ref); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s: %s %s (%d plugins)\n", out, ref, digest, len(opts.Plugins))
	return nil
}
