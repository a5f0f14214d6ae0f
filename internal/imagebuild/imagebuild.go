// Package imagebuild assembles Faro's container image without a container
// daemon, as ko does: the static faro binary and the example plugins in
// one layer on an empty base, run as a non-root user, written as an OCI
// image layout archive (`make image`). It is packaging, not part of the
// watch pipeline.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// User is the uid:gid the image runs as (distroless' nonroot).
const User = "65532:65532"

// Options configures Build.
type Options struct {
	// Binary is the static faro binary, installed as /faro (the entrypoint).
	Binary string
	// Plugins are .wasm files, installed under /plugins.
	Plugins []string
	// CACerts, when set, is a CA bundle installed as
	// /etc/ssl/certs/ca-certificates.crt, for plugins' HTTPS calls.
	CACerts string
	// OS and Arch are the platform of Binary (default linux/amd64).
	OS, Arch string
	// Created is the image's creation time; the zero time keeps builds
	// reproducible.
	Created time.Time
}

// Build assembles the image.
func Build(opts Options) (v1.Image, error) {
	if opts.Binary == "" {
		return nil, errors.New("imagebuild: Options.Binary is required")
	}
	if opts.OS == "" {
		opts.OS = "linux"
	}
	if opts.Arch == "" {
		opts.Arch = "amd64"
	}
	files := []file{{src: opts.Binary, dst: "faro", mode: 0o755}}
	for _, p := range opts.Plugins {
		files = append(files, file{src: p, dst: path.Join("plugins", filepath.Base(p)), mode: 0o644})
	}
	if opts.CACerts != "" {
		files = append(files, file{src: opts.CACerts, dst: "etc/ssl/certs/ca-certificates.crt", mode: 0o644})
	}
	layerTar, err := tarOf(files)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, MediaType: types.OCILayer, History: v1.History{
		CreatedBy: "faro imagebuild", Created: v1.Time{Time: opts.Created},
	}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = opts.OS, opts.Arch
	cf.Created = v1.Time{Time: opts.Created}
	cf.Config.User = User
	cf.Config.Entrypoint = []string{"/faro"}
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"XDG_CACHE_HOME=/var/cache"} // the compile cache: mount a volume there
	cf.Config.Labels = map[string]string{"org.opencontainers.image.title": "faro"}
	return mutate.ConfigFile(img, cf)
}

type file struct {
	src, dst string
	mode     int64
}

// tarOf writes files, and their parent directories, as a layer: owned by
// root, stamped with the zero time so that the digest depends only on the
// contents.
func tarOf(files []file) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	slices.SortFunc(files, func(a, b file) int { return cmp.Compare(a.dst, b.dst) })
	for _, f := range files {
		for d := path.Dir(f.dst); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	dirList := make([]string, 0, len(dirs))
	for d := range dirs {
		dirList = append(dirList, d)
	}
	slices.Sort(dirList) // parents sort before their children
	for _, d := range dirList {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f.src)
		if err != nil {
			return nil, fmt.Errorf("imagebuild: %w", err)
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.dst, Mode: f.mode, Size: int64(len(data)), Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteOCIArchive writes img as a tar of an OCI image layout (oci-layout,
// index.json, blobs/sha256/...), tagged ref in the index: what
// `podman load`, `docker load` (Docker 25+), `skopeo copy oci-archive:`
// and `crane push` take.
func WriteOCIArchive(w io.Writer, img v1.Image, ref string) error {
	tw := tar.NewWriter(w)
	write := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	blob := func(h v1.Hash, data []byte) error {
		return write(path.Join("blobs", h.Algorithm, h.Hex), data)
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "blobs/sha256/", Mode: 0o755, Format: tar.FormatPAX}); err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		h, err := l.Digest()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		if err := blob(h, data); err != nil {
			return err
		}
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	if err := blob(cfgName, cfg); err != nil {
		return err
	}
	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	if err := blob(digest, manifest); err != nil {
		return err
	}
	index, err := json.Marshal(v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: types.OCIManifestSchema1,
			Size:      int64(len(manifest)),
			Digest:    digest,
			// The first for podman and skopeo, the second for Docker/containerd.
			Annotations: map[string]string{"org.opencontainers.image.ref.name": ref, "io.containerd.image.name": ref},
		}},
	})
	if err != nil {
		return err
	}
	if err := write("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := write("index.json", index); err != nil {
		return err
	}
	return tw.Close()
}
