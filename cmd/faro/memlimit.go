package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroupRoot is where a container sees its own cgroup.
const cgroupRoot = "/sys/fs/cgroup"

// memoryLimitShare is the part of the container's memory limit given to the
// Go heap as its soft limit (GOMEMLIMIT): the rest is for memory the Go
// runtime does not count against it (plugins' linear memory, the binary's
// pages, goroutine stacks in flight).
const memoryLimitShare = 0.9

// cgroupMemoryLimit returns the memory limit of the cgroup under root in
// bytes (cgroup v2's memory.max, else v1's memory.limit_in_bytes), 0 when
// there is none or it cannot be read.
func cgroupMemoryLimit(root string) int64 {
	for _, f := range []string{"memory.max", filepath.Join("memory", "memory.limit_in_bytes")} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		// v2 writes "max" when unlimited; v1 a number near the largest
		// int64, rounded down to a page.
		if err != nil || n <= 0 || n >= 1<<62 {
			return 0
		}
		return n
	}
	return 0
}

// setMemoryLimit gives the Go runtime a soft memory limit below the
// container's, unless GOMEMLIMIT sets one, so that the GC works harder as
// the heap nears the limit instead of the kernel killing the process.
func setMemoryLimit(root string, set func(int64) int64) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	if n := cgroupMemoryLimit(root); n > 0 {
		set(int64(float64(n) * memoryLimitShare))
	}
}
