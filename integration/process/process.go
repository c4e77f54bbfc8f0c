// Package process stops the service processes the built-binary tests
// (bench, soak, faults) start, the way Kubernetes stops a pod.
package process

import (
	"os/exec"
	"syscall"
	"time"
)

// Stop sends SIGTERM, so the service drains as it would in production,
// kills it if it has not exited after grace, and waits for it either way.
// cmd must have been started; Stop must be its only waiter.
func Stop(cmd *exec.Cmd, grace time.Duration) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}
