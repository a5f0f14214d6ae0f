package imagebuild

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// TestBuild builds an image from a fake binary and plugin, checks its
// config and layer, writes the archive, and reads it back as an OCI
// layout.
func TestBuild(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bin := write("faro", "#!fake faro binary")
	plugin := write("changelog.wasm", "\x00asm fake")
	certs := write("ca.crt", "-----BEGIN CERTIFICATE-----")
	img, err := Build(Options{Binary: bin, Plugins: []string{plugin}, CACerts: certs, Arch: "arm64"})
	if err != nil {
		t.Fatal(err)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || !reflect.DeepEqual(cf.Config.Entrypoint, []string{"/faro"}) {
		t.Errorf("user %q entrypoint %q, want 65532:65532 and [/faro]", cf.Config.User, cf.Config.Entrypoint)
	}
	if cf.OS != "linux" || cf.Architecture != "arm64" {
		t.Errorf("platform %s/%s, want linux/arm64", cf.OS, cf.Architecture)
	}
	if !reflect.DeepEqual(cf.Config.Env, []string{"XDG_CACHE_HOME=/var/cache"}) {
		t.Errorf("env %q", cf.Config.Env)
	}

	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1 on an empty base", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	type entry struct {
		mode     int64
		uid      int
		contents string
	}
	got := map[string]entry{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		got[h.Name] = entry{h.Mode, h.Uid, string(data)}
	}
	want := map[string]entry{
		"etc/":                              {0o755, 0, ""},
		"etc/ssl/":                          {0o755, 0, ""},
		"etc/ssl/certs/":                    {0o755, 0, ""},
		"etc/ssl/certs/ca-certificates.crt": {0o644, 0, "-----BEGIN CERTIFICATE-----"},
		"faro":                              {0o755, 0, "#!fake faro binary"},
		"plugins/":                          {0o755, 0, ""},
		"plugins/changelog.wasm":            {0o644, 0, "\x00asm fake"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("layer:\n got %v\nwant %v", got, want)
	}

	// Reproducible: the same inputs give the same digest.
	again, err := Build(Options{Binary: bin, Plugins: []string{plugin}, CACerts: certs, Arch: "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("two builds of the same files: %s and %s", d1, d2)
	}

	var archive bytes.Buffer
	if err := WriteOCIArchive(&archive, img, "faro:test"); err != nil {
		t.Fatal(err)
	}
	layoutDir := untar(t, &archive)
	idx, err := layout.ImageIndexFromPath(layoutDir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != d1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "faro:test" {
		t.Fatalf("index.json: %+v, want one manifest %s named faro:test", im.Manifests, d1)
	}
	back, err := idx.Image(d1)
	if err != nil {
		t.Fatal(err)
	}
	backLayers, err := back.Layers()
	if err != nil {
		t.Fatal(err)
	}
	wantDigest, _ := layers[0].Digest()
	if gotDigest, err := backLayers[0].Digest(); err != nil || gotDigest != wantDigest {
		t.Errorf("layer read back: %v %v, want %v", gotDigest, err, wantDigest)
	}
	// Reading a blob back checks its digest against its contents.
	if rc, err := backLayers[0].Compressed(); err != nil {
		t.Error(err)
	} else if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Errorf("layer blob: %v", err)
	}
}

func TestBuildMissingBinary(t *testing.T) {
	if _, err := Build(Options{}); err == nil {
		t.Error("Build without a binary succeeded")
	}
	if _, err := Build(Options{Binary: filepath.Join(t.TempDir(), "nope")}); err == nil {
		t.Error("Build with a missing binary succeeded")
	}
}

// untar extracts an archive into a new folder.
func untar(t *testing.T, r io.Reader) string {
	t.Helper()
	dir := t.TempDir()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return dir
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
