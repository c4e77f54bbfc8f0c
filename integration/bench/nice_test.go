package bench

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// threadNices reads the nice value of every thread of this process.
func threadNices(t *testing.T) map[int]int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	require.NoError(t, err)
	nices := map[int]int{}
	for _, d := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + d.Name() + "/stat")
		if err != nil {
			continue // exited
		}
		s := string(b)
		// After the command name: state is the 1st field, nice the 17th.
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		tid, _ := strconv.Atoi(d.Name())
		nices[tid], err = strconv.Atoi(f[16])
		require.NoError(t, err)
	}
	return nices
}

func TestSetGeneratorNice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("lowering a nice value again needs root")
	}
	require.NoError(t, setGeneratorNice(-3))
	t.Cleanup(func() { _ = setGeneratorNice(0) })
	for tid, n := range threadNices(t) {
		assert.Equal(t, -3, n, "thread %d", tid)
	}
	// Threads started now take their creator's value. A goroutine that
	// locks its thread and waits holds it; more of them than there are
	// threads make the runtime start some, however many idle ones it has.
	before := len(threadNices(t))
	release, held := make(chan struct{}), make(chan struct{})
	for range before + 2 {
		go func() {
			runtime.LockOSThread() // the thread ends with the goroutine
			held <- struct{}{}
			<-release
		}()
	}
	for range before + 2 {
		<-held
	}
	after := threadNices(t)
	close(release)
	assert.Greater(t, len(after), before, "no thread was started")
	for tid, n := range after {
		assert.Equal(t, -3, n, "thread %d", tid)
	}

	require.NoError(t, setGeneratorNice(0))
	for tid, n := range threadNices(t) {
		assert.Equal(t, 0, n, "thread %d", tid)
	}
	// And a server started after it runs at the default.
	out, err := exec.Command("nice").Output()
	require.NoError(t, err)
	assert.Equal(t, "0", strings.TrimSpace(string(out)))
}
