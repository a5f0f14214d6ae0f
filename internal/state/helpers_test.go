package state

import (
	"os"
	"strconv"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

func typesUID(s string) types.UID { return types.UID(s) }

func itoa(i int) string { return strconv.Itoa(i) }

func sleep() { time.Sleep(10 * time.Millisecond) }

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
