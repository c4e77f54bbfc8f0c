package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// Histogram is a log-linear latency histogram in the manner of HdrHistogram:
// exact below 128 ns, and above that 64 linear sub-buckets per power of two,
// so any recorded value is reported within 1/64 (1.6%) of its true value
// over the whole range up to hours. Record is O(1) and allocation-free. The
// zero value is not usable: call NewHistogram. It is not safe for
// concurrent use; give each worker its own and Merge them.
type Histogram struct {
	counts   []uint64
	n        uint64
	sum      float64
	min, max int64
}

const (
	subBits    = 6 // 64 sub-buckets per power of two
	subCount   = 1 << subBits
	linearTop  = 2 * subCount // values below this are their own bucket
	bucketsLen = linearTop + (64-subBits-1)*subCount
)

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{counts: make([]uint64, bucketsLen), min: math.MaxInt64}
}

// index maps v ≥ 0 to its bucket.
func index(v int64) int {
	if v < linearTop {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - subBits - 1 // ≥ 1
	return shift*subCount + int(v>>shift)
}

// upper is the highest value that lands in bucket i.
func upper(i int) int64 {
	if i < linearTop {
		return int64(i)
	}
	shift := i/subCount - 1
	sub := int64(i%subCount + subCount)
	return (sub+1)<<shift - 1
}

// Record adds one latency. Negative durations (a clock step) count as 0.
func (h *Histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[index(v)]++
	h.n++
	h.sum += float64(v)
	h.min = min(h.min, v)
	h.max = max(h.max, v)
}

// Merge adds every value recorded in o.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest recorded value, exactly.
func (h *Histogram) Max() time.Duration { return time.Duration(max(h.max, 0)) }

// Mean is the exact mean of the recorded values.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the value at quantile q (0 < q ≤ 1): the upper bound of
// the bucket holding the ⌈q·n⌉-th smallest value, capped at the exact
// maximum, so it never understates a latency.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(upper(i), h.max))
		}
	}
	return h.Max()
}
