// Command guest is the test plugin of internal/wasmhost: the event's name,
// up to its first dot, selects what it does, from nothing at all to
// misbehaving in every way the host must survive.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/faro-dev/faro/plugins/sdk"
)

func main() {}

func init() { sdk.Handle(handle) }

var (
	calls int      // per-instance state, to observe recycling
	hoard [][]byte // memory kept across calls
	spin  uint64   // a global, so the busy loop cannot be optimised away
)

func handle(ev sdk.Event) error {
	calls++
	behaviour, _, _ := strings.Cut(ev.Name, ".")
	switch behaviour {
	case "", "empty":
		return nil
	case "echo":
		obj, err := ev.Object()
		if err != nil {
			return err
		}
		var oldObj map[string]any // null but on UPDATED
		if ev.Type == "UPDATED" {
			if oldObj, err = ev.OldObject(); err != nil {
				return err
			}
		}
		return sdk.Emit(map[string]any{
			"type": ev.Type, "gvr": ev.GVR, "key": ev.Key(), "uid": ev.UID, "rv": ev.ResourceVersion,
			"rule": ev.Rule, "initial": ev.Initial, "kind": ev.Kind(), "object": obj, "old_object": oldObj,
			"label": ev.Field("metadata", "labels", "app.kubernetes.io/name").String(),
			"old":   ev.OldField("data").Raw(),
			"calls": calls,
		})
	case "error":
		return errors.New("boom")
	case "panic":
		var m map[string]int
		m["x"] = 1 // nil map write: a runtime panic, recovered by the SDK
		return nil
	case "trap":
		done := make(chan struct{})
		go func() { panic("kaboom in a goroutine") }()
		<-done
		return nil
	case "exit":
		os.Exit(3)
	case "loop":
		for {
			spin++
		}
	case "sleep":
		time.Sleep(time.Hour)
		return nil
	case "nap":
		time.Sleep(50 * time.Millisecond)
		return nil
	case "oom":
		for {
			hoard = append(hoard, make([]byte, 1<<20))
		}
	case "grow":
		hoard = append(hoard, make([]byte, 4<<20))
		return nil
	case "flood":
		rec := map[string]string{"pad": strings.Repeat("x", 1000)}
		for i := 0; ; i++ {
			if err := sdk.Emit(rec); err != nil {
				return fmt.Errorf("record %d: %w", i, err)
			}
		}
	case "bigflood":
		rec := map[string]string{"pad": strings.Repeat("x", 100<<10)}
		for i := 0; ; i++ {
			if err := sdk.Emit(rec); err != nil {
				return fmt.Errorf("record %d: %w", i, err)
			}
		}
	case "invalid":
		return sdk.Emit([]int{1, 2})
	case "log":
		sdk.LogInfo("hello from the guest", "n", 1)
		fmt.Fprintln(os.Stderr, "a line on stderr")
		fmt.Println("a line on stdout")
		return nil
	case "noisy":
		fmt.Fprint(os.Stderr, strings.Repeat("noise ", 20000))
		for range 20000 {
			sdk.LogDebug("chatter")
		}
		return nil
	case "config":
		var cfg map[string]any
		if err := sdk.Config(&cfg); err != nil {
			return err
		}
		return sdk.Emit(map[string]any{"config": cfg})
	case "http":
		status, body, err := sdk.HTTPPost(ev.Field("url").String(), []byte(`{"hello":"`+ev.Namespace+`"}`))
		if err != nil {
			return err
		}
		return sdk.Emit(map[string]any{"status": status, "body": string(body)})
	case "bighttp":
		_, _, err := sdk.HTTPPost(ev.Field("url").String(), make([]byte, 2<<20))
		return err
	case "sandbox":
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		_, fsErr := os.ReadDir("/")
		_, cwdErr := os.Open("guest.wasm")
		return sdk.Emit(map[string]any{
			"env": os.Environ(), "args": len(os.Args), "fs": fsErr != nil && cwdErr != nil,
			"now": time.Now().Unix(), "rand": hex.EncodeToString(b), "calls": calls,
		})
	}
	return fmt.Errorf("unknown behaviour %q", behaviour)
}
