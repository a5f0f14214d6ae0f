// Package state keeps Faro's delivery ledger on disk (state_dir), so that a
// restart resumes where the last run stopped instead of reporting every
// object again. It sits beside the engine: the engine records each event
// whose handlers are done (engine.Checkpoint.Record) and, when it starts
// watching a resource, reads back what was delivered of it.
//
// The store is one bbolt file, ledger.db: a bucket per resource, keyed by
// object UID, holding the object's place, its resource version and its last
// delivered state (on disk only; the engine keeps no bodies), and the
// resource's binding (where its record starts, the rules told of it).
// Writes are batched and committed (fsynced) every FlushEvery or FlushBatch
// records.
package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/faro-dev/faro/engine"
	"github.com/faro-dev/faro/internal/object"
)

// FileName is the ledger's file inside the state folder.
const FileName = "ledger.db"

// format marks a file as Faro's ledger; a file without it is refused.
var (
	metaBucket = []byte("faro")
	formatKey  = []byte("format")
	format     = []byte("faro-ledger/2")
	// A resource's bucket keeps its binding (engine.Binding) under keys
	// that start with '!', which no UID does.
	sinceKey = []byte("!since")
	rulesKey = []byte("!rules")
)

// Options configures Open.
type Options struct {
	// Dir is the state folder; it is created when missing.
	Dir string
	Log hclog.Logger
	// FlushEvery and FlushBatch bound how long and how many records wait
	// before a commit (defaults 100ms and 1000).
	FlushEvery time.Duration
	FlushBatch int
}

// Store is an open ledger file. It implements engine.Checkpoint.
type Store struct {
	opts Options
	path string
	db   *bolt.DB

	mu      sync.Mutex
	resumed map[string]engine.Resumed // by bucket name, read at Open; a forgotten resource leaves it
	pending []op
	kick    chan struct{}
	stop    context.CancelFunc
	done    chan struct{}
}

// op is one write: a delivered state, a deletion, a binding, or a
// forgotten resource (bind set, binding nil).
type op struct {
	bucket  string
	obj     *object.Object
	deleted bool
	bind    bool
	binding *engine.Binding
}

// Open opens (or creates) the ledger in opts.Dir and reads what it holds.
// A file that is not a Faro ledger, or is damaged, is refused with an error
// naming it; it is never reset.
func Open(opts Options) (*Store, error) {
	if opts.Log == nil {
		opts.Log = hclog.NewNullLogger()
	}
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = 100 * time.Millisecond
	}
	if opts.FlushBatch <= 0 {
		opts.FlushBatch = 1000
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	path := filepath.Join(opts.Dir, FileName)
	refuse := func(err error) error {
		return fmt.Errorf("state_dir: %s is not a usable Faro ledger: %w (move it away to start without the saved state)", path, err)
	}
	db, err := openBolt(path)
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("state_dir: %s is in use by another process", path)
	}
	if err != nil {
		return nil, refuse(err)
	}
	s := &Store{opts: opts, path: path, db: db, kick: make(chan struct{}, 1), done: make(chan struct{})}
	if err := s.load(); err != nil {
		db.Close()
		return nil, refuse(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	go s.flushLoop(ctx)
	return s, nil
}

// openBolt opens the file; bbolt panics on some damaged files instead of
// returning an error, and a file shorter than its meta page says faults
// when bbolt reads the missing pages, so that is checked first.
func openBolt(path string) (db *bolt.DB, err error) {
	if err := checkLength(path); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("damaged: %v", r)
		}
	}()
	return bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
}

// checkLength refuses a bbolt file cut short (a torn copy, a full disk):
// bbolt uses the valid meta page with the highest transaction id, and
// reads every page below its high-water mark.
func checkLength(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return err
	}
	const header, magic, version = 16, 0xED0CDAED, 2 // page header; bbolt's meta marks
	meta := func(off int64) (pageSize, pages, txid uint64, ok bool) {
		b := make([]byte, 64)
		if _, err := f.ReadAt(b, off+header); err != nil {
			return 0, 0, 0, false
		}
		le := binary.LittleEndian
		sum := fnv.New64a()
		sum.Write(b[:56])
		if le.Uint32(b[0:]) != magic || le.Uint32(b[4:]) != version || le.Uint64(b[56:]) != sum.Sum64() {
			return 0, 0, 0, false
		}
		return uint64(le.Uint32(b[8:])), le.Uint64(b[40:]), le.Uint64(b[48:]), true
	}
	size, pages, txid, ok := meta(0)
	if !ok {
		size = uint64(os.Getpagesize()) // where bbolt looks for the second one then
	}
	if size2, pages2, txid2, ok2 := meta(int64(size)); ok2 && (!ok || txid2 > txid) {
		size, pages, ok = size2, pages2, true
	}
	if ok && uint64(st.Size()) < pages*size {
		return fmt.Errorf("truncated: %d bytes, its meta page needs %d", st.Size(), pages*size)
	}
	return nil
}

// load checks the format mark (writing it into a new, empty file) and reads
// the identity of every delivered object. bbolt panics on some damaged
// pages: that is a refusal too.
func (s *Store) load() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("damaged: %v", r)
		}
	}()
	s.resumed = map[string]engine.Resumed{}
	return s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		if meta == nil {
			empty := true
			_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				return errors.New("it holds data of another program")
			}
			meta, err := tx.CreateBucket(metaBucket)
			if err != nil {
				return err
			}
			return meta.Put(formatKey, format)
		}
		if f := meta.Get(formatKey); !bytes.Equal(f, format) {
			return fmt.Errorf("unknown format %q (this Faro reads %q)", f, format)
		}
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if bytes.Equal(name, metaBucket) {
				return nil
			}
			bucket := string(name)
			var r engine.Resumed
			err := b.ForEach(func(k, v []byte) error {
				switch {
				case bytes.Equal(k, sinceKey):
					r.Binding.Since, _ = strconv.ParseUint(string(v), 10, 64)
					return nil
				case bytes.Equal(k, rulesKey):
					r.Binding.Rules = strings.Fields(string(v))
					return nil
				case bytes.HasPrefix(k, []byte("!")):
					return nil // a binding key this Faro does not know
				}
				ns, name, rv, _, err := decode(v)
				if err != nil {
					return fmt.Errorf("resource %s, object %s: %w", bucket, k, err)
				}
				r.Objects = append(r.Objects, engine.ResumedObject{Namespace: ns, Name: name, UID: types.UID(k), ResourceVersion: rv})
				return nil
			})
			if err != nil {
				return err
			}
			r.Object = func(uid types.UID) *object.Object { return s.object(bucket, uid) }
			s.resumed[bucket] = r
			return nil
		})
	})
}

// Resume returns what was delivered of gvr before the restart; nothing once
// gvr was forgotten.
func (s *Store) Resume(gvr schema.GroupVersionResource) engine.Resumed {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resumed[bucketName(gvr)]
}

// Record queues a delivered state (or deletion) for the next commit.
func (s *Store) Record(gvr schema.GroupVersionResource, m engine.Mark) {
	s.add(op{bucket: bucketName(gvr), obj: m.Object, deleted: m.Deleted})
}

// Bind queues gvr's binding for the next commit; a nil one queues the
// removal of everything recorded of gvr.
func (s *Store) Bind(gvr schema.GroupVersionResource, b *engine.Binding) {
	name := bucketName(gvr)
	if b == nil {
		s.mu.Lock()
		delete(s.resumed, name)
		s.mu.Unlock()
	}
	s.add(op{bucket: name, bind: true, binding: b})
}

func (s *Store) add(o op) {
	s.mu.Lock()
	s.pending = append(s.pending, o)
	full := len(s.pending) >= s.opts.FlushBatch
	s.mu.Unlock()
	if full {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// object reads the last delivered state of one object; nil when it cannot.
func (s *Store) object(bucket string, uid types.UID) *object.Object {
	var o *object.Object
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		v := b.Get([]byte(uid))
		if v == nil {
			return nil
		}
		_, _, _, body, err := decode(v)
		if err != nil {
			return err
		}
		// bolt's bytes live only as long as the transaction.
		o, err = object.Decode(bytes.Clone(body), object.Options{KeepLastApplied: true})
		return err
	})
	if err != nil {
		s.opts.Log.Warn("state: cannot read an object's last delivered state", "file", s.path, "uid", uid, "error", err)
		return nil
	}
	return o
}

// flushLoop commits the pending records every FlushEvery, or sooner when a
// batch is full, until Close.
func (s *Store) flushLoop(ctx context.Context) {
	defer close(s.done)
	tick := time.NewTicker(s.opts.FlushEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			s.flush()
			return
		case <-tick.C:
		case <-s.kick:
		}
		s.flush()
	}
}

// maxRetained bounds the records kept for a retry when commits fail.
const maxRetained = 100_000

// flush commits the pending records in one transaction. When the commit
// fails they are kept for the next one (at most maxRetained): what is not
// recorded is delivered again after a restart, never lost.
func (s *Store) flush() {
	s.mu.Lock()
	ops := s.pending
	s.pending = nil
	s.mu.Unlock()
	if len(ops) == 0 {
		return
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, o := range ops {
			if err := apply(tx, o); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		return
	}
	s.opts.Log.Error("state: cannot write the ledger; retrying (undelivered marks mean re-delivery after a restart)", "file", s.path, "error", err)
	s.mu.Lock()
	s.pending = append(ops, s.pending...)
	if n := len(s.pending); n > maxRetained {
		s.pending = s.pending[n-maxRetained:]
	}
	s.mu.Unlock()
}

func apply(tx *bolt.Tx, o op) error {
	name := []byte(o.bucket)
	if o.bind && o.binding == nil {
		if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
			return err
		}
		return nil
	}
	b, err := tx.CreateBucketIfNotExists(name)
	if err != nil {
		return err
	}
	if o.bind {
		if err := b.Put(sinceKey, strconv.AppendUint(nil, o.binding.Since, 10)); err != nil {
			return err
		}
		return b.Put(rulesKey, []byte(strings.Join(o.binding.Rules, " ")))
	}
	uid := []byte(o.obj.UID)
	if o.deleted {
		return b.Delete(uid)
	}
	return b.Put(uid, encode(o.obj.Namespace, o.obj.Name, o.obj.ResourceVersion, o.obj.JSON()))
}

// Close commits what is pending and closes the file.
func (s *Store) Close() error {
	s.stop()
	<-s.done
	return s.db.Close()
}

func bucketName(gvr schema.GroupVersionResource) string {
	return gvr.Group + "/" + gvr.Version + "/" + gvr.Resource
}

// A record is namespace NUL name NUL resourceVersion NUL body: none of the
// first three can hold a NUL.
func encode(ns, name, rv string, body []byte) []byte {
	out := make([]byte, 0, len(ns)+len(name)+len(rv)+3+len(body))
	out = append(append(out, ns...), 0)
	out = append(append(out, name...), 0)
	out = append(append(out, rv...), 0)
	return append(out, body...)
}

func decode(v []byte) (ns, name, rv string, body []byte, err error) {
	parts := bytes.SplitN(v, []byte{0}, 4)
	if len(parts) != 4 {
		return "", "", "", nil, errors.New("malformed record")
	}
	return string(parts[0]), string(parts[1]), string(parts[2]), parts[3], nil
}
