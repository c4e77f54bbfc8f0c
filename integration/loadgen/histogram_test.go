package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHistogramBuckets(t *testing.T) {
	// Every value lands in a bucket whose upper bound is at or above it and
	// within 1/64 of it, and bucket indexes never go backwards.
	prev := 0
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 20, 123456789, 3600e9, math.MaxInt64 >> 1} {
		i := index(v)
		require.GreaterOrEqual(t, i, prev, "index(%d)", v)
		require.Less(t, i, bucketsLen, "index(%d)", v)
		prev = i
		u := upper(i)
		assert.GreaterOrEqual(t, u, v, "upper(index(%d))", v)
		assert.LessOrEqual(t, float64(u-v), float64(v)/subCount+1, "bucket of %d too wide", v)
	}
	// Consecutive buckets tile the range: no gaps, no overlaps.
	for i := 1; i < 3000; i++ {
		require.Equal(t, i, index(upper(i-1)+1), "bucket after %d", i-1)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	tests := []struct {
		name   string
		values func(r *rand.Rand) time.Duration
	}{
		{"uniform 0-10ms", func(r *rand.Rand) time.Duration { return time.Duration(r.Int64N(int64(10 * time.Millisecond))) }},
		{"exponential around 100µs", func(r *rand.Rand) time.Duration { return time.Duration(r.ExpFloat64() * 100e3) }},
		{"bimodal with a slow tail", func(r *rand.Rand) time.Duration {
			if r.IntN(100) == 0 {
				return 50*time.Millisecond + time.Duration(r.Int64N(1e6))
			}
			return 80*time.Microsecond + time.Duration(r.Int64N(40e3))
		}},
		{"constant", func(*rand.Rand) time.Duration { return 42 * time.Microsecond }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			h := NewHistogram()
			var exact []time.Duration
			for range 20000 {
				v := tt.values(r)
				h.Record(v)
				exact = append(exact, v)
			}
			slices.Sort(exact)
			require.Equal(t, uint64(len(exact)), h.Count())
			require.Equal(t, exact[len(exact)-1], h.Max())
			for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
				want := exact[int(math.Ceil(q*float64(len(exact))))-1]
				got := h.Quantile(q)
				assert.GreaterOrEqual(t, got, want, "q%v never understates", q)
				assert.LessOrEqual(t, float64(got-want), float64(want)/subCount+1, "q%v within 1/64", q)
			}
		})
	}
}

func TestHistogramMergeAndEmpty(t *testing.T) {
	a, b, all := NewHistogram(), NewHistogram(), NewHistogram()
	assert.Zero(t, a.Quantile(0.99))
	assert.Zero(t, a.Max())
	assert.Zero(t, a.Mean())
	for i := range 1000 {
		d := time.Duration(i) * time.Microsecond
		all.Record(d)
		if i%2 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(b)
	assert.Equal(t, all.Count(), a.Count())
	assert.Equal(t, all.Max(), a.Max())
	assert.Equal(t, all.Mean(), a.Mean())
	for _, q := range []float64{0.5, 0.99} {
		assert.Equal(t, all.Quantile(q), a.Quantile(q))
	}
	a.Record(-time.Second) // a clock step counts as zero
	assert.Equal(t, time.Duration(0), a.Quantile(0.0001))
}

func TestHistogramRecordDoesNotAllocate(t *testing.T) {
	h := NewHistogram()
	assert.Zero(t, testing.AllocsPerRun(1000, func() { h.Record(123 * time.Microsecond) }))
}

func FuzzHistogram(f *testing.F) {
	f.Add(int64(0), int64(1), int64(1e9))
	f.Add(int64(127), int64(128), int64(129))
	f.Fuzz(func(t *testing.T, a, b, c int64) {
		h := NewHistogram()
		vals := []int64{max(a, 0), max(b, 0), max(c, 0)}
		for _, v := range vals {
			h.Record(time.Duration(v))
		}
		slices.Sort(vals)
		if h.Max() != time.Duration(vals[2]) {
			t.Fatalf("max %v, want %d", h.Max(), vals[2])
		}
		prev := time.Duration(0)
		for i, q := range []float64{1.0 / 3, 2.0 / 3, 1} {
			got := h.Quantile(q)
			if got < time.Duration(vals[i]) || got > h.Max() || got < prev {
				t.Fatalf("quantile %v = %v for %v", q, got, vals)
			}
			prev = got
		}
	})
}
