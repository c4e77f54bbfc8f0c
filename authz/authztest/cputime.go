package authztest

import (
	"syscall"
	"testing"
	"time"
)

// CPUTime is the process's CPU time, user and system, every thread (the
// garbage collector's included).
func CPUTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// LoopCPU runs op under b.Loop and reports cpu-ns/op, the process's CPU
// time per op: on a shared machine wall time also counts the other
// tenants, CPU time does not.
func LoopCPU(b *testing.B, op func()) {
	b.Helper()
	b.ReportAllocs()
	cpu, n := CPUTime(), 0
	for b.Loop() {
		op()
		n++
	}
	if n > 0 {
		b.ReportMetric(float64((CPUTime()-cpu).Nanoseconds())/float64(n), "cpu-ns/op")
	}
}
