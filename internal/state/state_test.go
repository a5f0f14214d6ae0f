package state

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/faro-dev/faro/engine"
	"github.com/faro-dev/faro/internal/object"
)

var cms = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

func cm(name, uid, rv, value string) *object.Object {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "data": map[string]any{"k": value}}}
	u.SetNamespace("ns")
	u.SetName(name)
	u.SetUID(typesUID(uid))
	u.SetResourceVersion(rv)
	o, err := object.FromUnstructured(u)
	if err != nil {
		panic(err)
	}
	return o
}

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRoundTrip: what is recorded before Close is resumed by the next Open:
// places and versions in memory, bodies on demand; deletions and forgotten
// resources are gone; the binding survives.
func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if r := s.Resume(cms); len(r.Objects) != 0 {
		t.Fatalf("a new ledger resumes %d objects", len(r.Objects))
	}
	secrets := schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	s.Record(cms, engine.Mark{Object: cm("a", "u1", "5", "one")})
	s.Record(cms, engine.Mark{Object: cm("a", "u1", "7", "two")})
	s.Record(cms, engine.Mark{Object: cm("b", "u2", "8", "x")})
	s.Record(cms, engine.Mark{Object: cm("b", "u2", "9", "x"), Deleted: true})
	s.Bind(cms, &engine.Binding{Since: 4, Rules: []string{"k1"}})
	s.Bind(cms, &engine.Binding{Since: 4, Rules: []string{"k1", "k2"}})
	s.Record(secrets, engine.Mark{Object: cm("s", "u3", "3", "x")})
	s.Bind(secrets, &engine.Binding{Since: 2})
	s.Bind(secrets, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir)
	defer s.Close()
	r := s.Resume(cms)
	if len(r.Objects) != 1 || r.Objects[0] != (engine.ResumedObject{Namespace: "ns", Name: "a", UID: "u1", ResourceVersion: "7"}) {
		t.Fatalf("resumed %+v, want only a@7", r.Objects)
	}
	if b := r.Binding; b.Since != 4 || !slices.Equal(b.Rules, []string{"k1", "k2"}) {
		t.Errorf("resumed binding %+v, want since 4 and rules k1 k2 (the last saved)", b)
	}
	body, err := r.Object("u1").Unstructured()
	if err != nil {
		t.Fatal(err)
	}
	if v, _, _ := unstructured.NestedString(body.Object, "data", "k"); v != "two" {
		t.Errorf("last delivered state has data.k=%q, want two", v)
	}
	if r.Object("u2") != nil {
		t.Error("a deleted object's state is still there")
	}
	if r := s.Resume(secrets); len(r.Objects) != 0 || r.Binding.Since != 0 {
		t.Errorf("a forgotten resource resumes %+v", r)
	}
	// Forgotten while running, a resource no longer resumes what the file
	// held at Open: watched again, it starts afresh.
	s.Bind(cms, nil)
	if r := s.Resume(cms); len(r.Objects) != 0 || r.Binding.Since != 0 {
		t.Errorf("after Bind(nil) the resource still resumes %+v", r)
	}
}

// TestBatchesCommitWithoutClose: a full batch is committed at once; a
// crashed process (no Close) leaves it on disk.
func TestBatchesCommitWithoutClose(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, FlushBatch: 2, FlushEvery: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	s.Record(cms, engine.Mark{Object: cm("a", "u1", "5", "x")})
	s.Record(cms, engine.Mark{Object: cm("b", "u2", "6", "x")})
	deadline := 0
	for ; deadline < 500; deadline++ {
		var n int
		_ = s.db.View(func(tx *bolt.Tx) error {
			if b := tx.Bucket([]byte(bucketName(cms))); b != nil {
				n = b.Stats().KeyN
			}
			return nil
		})
		if n == 2 {
			break
		}
		sleep()
	}
	if deadline == 500 {
		t.Fatal("a full batch was not committed")
	}
	s.Close()
}

// TestRefusedFiles: a file that is not a Faro ledger, or is damaged, is
// refused with its path; it is left as it was.
func TestRefusedFiles(t *testing.T) {
	tests := []struct {
		name string
		make func(t *testing.T, path string)
		want string
	}{
		{"garbage", func(t *testing.T, path string) {
			write(t, path, []byte(strings.Repeat("not a database ", 1000)))
		}, "not a usable Faro ledger"},
		{"torn", func(t *testing.T, path string) {
			dir := filepath.Dir(path)
			s := open(t, dir)
			for i := range 200 {
				s.Record(cms, engine.Mark{Object: cm(strings.Repeat("n", 50)+string(rune('a'+i%26))+itoa(i), "u"+itoa(i), itoa(i+1), strings.Repeat("v", 500))})
			}
			s.Close()
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			write(t, path, data[:len(data)/3])
		}, "not a usable Faro ledger"},
		{"another program's bbolt file", func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			_ = db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err })
			db.Close()
		}, "another program"},
		{"another format", func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			_ = db.Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucket(metaBucket)
				if err != nil {
					return err
				}
				return b.Put(formatKey, []byte("faro-ledger/99"))
			})
			db.Close()
		}, "unknown format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			tt.make(t, path)
			before, _ := os.ReadFile(path)
			_, err := Open(Options{Dir: dir})
			if err == nil {
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %s and say %q", err, path, tt.want)
			}
			after, _ := os.ReadFile(path)
			if string(before) != string(after) {
				t.Error("the refused file was changed")
			}
		})
	}
}
