package bench

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/integration/loadgen"
)

// pairGap is the fixed-rate pairs' p99 gap (service minus floor), two
// ways, and how sure one run can be of it. On a shared two-core machine a
// pair's p99 moves by a millisecond from one run to the next, twice the
// target's margin: the interval says whether a run decided the target or
// could not.
type pairGap struct {
	// Pairs is how many pairs the figures come from.
	Pairs int `json:"pairs"`
	// MediansUS is the target's measure: the median of the service's runs'
	// p99s minus the median of the floor's.
	MediansUS float64 `json:"medians_us"`
	// Interval90US is a 90% bootstrap interval of MediansUS: pairs drawn
	// with replacement, a pair's two runs always together (the machine's
	// state at that moment met both), each draw's gap taken as MediansUS is.
	Interval90US [2]float64 `json:"interval_90_us"`
	// MedianOfDifferencesUS is the median over the pairs of each pair's
	// service p99 minus its floor p99.
	MedianOfDifferencesUS float64 `json:"median_of_differences_us"`
}

// gapDraws is how many bootstrap draws p99Gap makes.
const gapDraws = 2000

// p99Gap summarises the p99s (µs) of pairs of runs, svc[i] run beside
// floor[i]. The draws are seeded, so a report can be recomputed.
func p99Gap(ps, pf []float64, draws int, seed uint64) pairGap {
	n := min(len(ps), len(pf))
	if n == 0 {
		return pairGap{}
	}
	diffs := make([]float64, n)
	for i := range n {
		diffs[i] = ps[i] - pf[i]
	}
	g := pairGap{Pairs: n, MediansUS: median(ps[:n]) - median(pf[:n]), MedianOfDifferencesUS: median(diffs)}
	rng := rand.New(rand.NewPCG(seed, 0))
	boot := make([]float64, max(draws, 1))
	ds, df := make([]float64, n), make([]float64, n)
	for d := range boot {
		for i := range n {
			k := rng.IntN(n)
			ds[i], df[i] = ps[k], pf[k]
		}
		boot[d] = median(ds) - median(df)
	}
	slices.Sort(boot)
	g.Interval90US = [2]float64{boot[len(boot)*5/100], boot[(len(boot)*95+99)/100-1]}
	return g
}

// minPairs is the fewest pairs whose interval verdict means anything: with
// fewer, a draw's median is one of a handful of values.
const minPairs = 5

// verdict says what a run's interval decides against the target.
func (g pairGap) verdict(limitUS float64) string {
	switch {
	case g.Pairs < minPairs:
		return "too few pairs to tell"
	case g.Interval90US[1] <= limitUS:
		return "met"
	case g.Interval90US[0] > limitUS:
		return "missed"
	default:
		return "undecided"
	}
}

// String is the gap as the bench prints it, against the target.
func (g pairGap) String() string {
	return fmt.Sprintf("%+.0f µs by the medians (90%% interval %+.0f to %+.0f µs over %d pairs: against %d µs, %s), %+.0f µs by the median of the pairs' differences",
		g.MediansUS, g.Interval90US[0], g.Interval90US[1], g.Pairs, targetP99OverFloorUS, g.verdict(targetP99OverFloorUS), g.MedianOfDifferencesUS)
}

func TestP99Gap(t *testing.T) {
	// The p99 of a run of 1,000 requests, 900 at 1 ms and 100 at tail, as
	// the load generator's histogram reports it (to within 1.6%).
	const bucket = 0.016
	tail := func(t time.Duration) float64 {
		h := loadgen.NewHistogram()
		for i := range 1000 {
			if i < 900 {
				h.Record(time.Millisecond)
			} else {
				h.Record(t)
			}
		}
		return float64(h.Quantile(0.99).Nanoseconds()) / 1e3
	}
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

	t.Run("the same gap in every pair", func(t *testing.T) {
		var svc, floor []float64
		for range 9 {
			svc, floor = append(svc, tail(ms(5))), append(floor, tail(ms(4)))
		}
		g := p99Gap(svc, floor, 200, 1)
		for _, v := range []float64{g.MediansUS, g.MedianOfDifferencesUS} {
			assert.InEpsilon(t, 1000, v, bucket*5)
		}
		assert.Equal(t, [2]float64{g.MediansUS, g.MediansUS}, g.Interval90US)
		assert.Equal(t, "missed", g.verdict(500))
		assert.Equal(t, "met", g.verdict(1100))
		assert.Equal(t, fmt.Sprintf("%+.0f µs by the medians (90%% interval %+.0f to %+.0f µs over 9 pairs: against 500 µs, missed), %+.0f µs by the median of the pairs' differences",
			g.MediansUS, g.MediansUS, g.MediansUS, g.MedianOfDifferencesUS), g.String())
	})

	t.Run("a pair's runs are drawn together", func(t *testing.T) {
		// The machine's state moves both runs of a pair alike: the floor's
		// tail goes from 3 to 7 ms over the pairs, the service's is always
		// 1 ms above. Drawn apart, the runs would give gaps of -3 to +5 ms.
		var svc, floor []float64
		for i := range 9 {
			f := 3 + 0.5*float64(i)
			svc, floor = append(svc, tail(ms(f+1))), append(floor, tail(ms(f)))
		}
		g := p99Gap(svc, floor, 500, 7)
		assert.InEpsilon(t, 1000, g.MedianOfDifferencesUS, bucket*8)
		assert.InEpsilon(t, 1000, g.MediansUS, bucket*8)
		for _, v := range g.Interval90US {
			assert.InDelta(t, 1000, v, 8000*bucket, "interval %v", g.Interval90US)
		}
	})

	t.Run("pairs that disagree widen the interval", func(t *testing.T) {
		// Gaps of 0 to 2 ms over the pairs, 1 ms in the median.
		var svc, floor []float64
		for i := range 9 {
			svc, floor = append(svc, tail(ms(4+0.25*float64(i)))), append(floor, tail(ms(4)))
		}
		g := p99Gap(svc, floor, 1000, 3)
		assert.InEpsilon(t, 1000, g.MediansUS, bucket*5)
		assert.InEpsilon(t, 1000, g.MedianOfDifferencesUS, bucket*5)
		lo, hi := g.Interval90US[0], g.Interval90US[1]
		assert.Less(t, lo, 1000.0)
		assert.Greater(t, hi, 1000.0)
		assert.GreaterOrEqual(t, lo, 0.0)
		assert.LessOrEqual(t, hi, 2000*(1+bucket))
		assert.Equal(t, "undecided", g.verdict(1000))
		assert.Equal(t, g, p99Gap(svc, floor, 1000, 3), "the draws are seeded")
	})

	t.Run("too few pairs", func(t *testing.T) {
		var svc, floor []float64
		for range minPairs - 1 {
			svc, floor = append(svc, tail(ms(5))), append(floor, tail(ms(4)))
		}
		g := p99Gap(svc, floor, 100, 1)
		assert.Equal(t, minPairs-1, g.Pairs)
		assert.Equal(t, "too few pairs to tell", g.verdict(500))
		assert.Equal(t, "missed", p99Gap(append(svc, tail(ms(5))), append(floor, tail(ms(4))), 100, 1).verdict(500))
	})

	t.Run("no pairs", func(t *testing.T) {
		require.Equal(t, pairGap{}, p99Gap(nil, nil, 10, 1))
	})
}
