package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func read(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseVmHWM(t *testing.T) {
	for _, tc := range []struct {
		file    string
		want    int64
		wantErr bool
	}{
		{file: "status", want: 51224 * 1024},
		{file: "status-no-hwm", wantErr: true},
		{file: "status-bad-unit", wantErr: true},
	} {
		t.Run(tc.file, func(t *testing.T) {
			got, err := parseVmHWM(read(t, tc.file))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseVmHWM = %d, %v; want %d, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestParseCPUTime(t *testing.T) {
	for _, tc := range []struct {
		file    string
		want    time.Duration
		wantErr bool
	}{
		// The command name holds spaces and a ')'; utime 123 + stime 45 ticks.
		{file: "stat", want: 168 * clockTick},
		{file: "stat-short", wantErr: true},
	} {
		t.Run(tc.file, func(t *testing.T) {
			got, err := parseCPUTime(read(t, tc.file))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseCPUTime = %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestParseCPUModel(t *testing.T) {
	for _, tc := range []struct {
		file, want string
	}{
		{"cpuinfo", "Intel(R) Xeon(R) CPU @ 2.20GHz"},
		{"status", "unknown CPU"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			if got := parseCPUModel(read(t, tc.file)); got != tc.want {
				t.Errorf("parseCPUModel = %q, want %q", got, tc.want)
			}
		})
	}
}
