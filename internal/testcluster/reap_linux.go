package testcluster

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// reapOrphans kills etcd and kube-apiserver processes started from assets
// whose parent has died (they were re-parented to init): they are what a
// test binary killed before it could run its cleanup leaves behind. envtest
// starts them in their own process group, so they would otherwise outlive it.
func reapOrphans(assets string) {
	bins := map[string]bool{
		filepath.Join(assets, "etcd"):           true,
		filepath.Join(assets, "kube-apiserver"): true,
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join(p, "exe"))
		if err != nil || !bins[exe] || parentPID(p) != 1 {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// parentPID reads the PPid field of /proc/PID/status; -1 when unknown.
func parentPID(procDir string) int {
	status, err := os.ReadFile(filepath.Join(procDir, "status"))
	if err != nil {
		return -1
	}
	for line := range bytes.Lines(status) {
		if v, ok := bytes.CutPrefix(line, []byte("PPid:")); ok {
			n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}
