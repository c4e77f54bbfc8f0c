package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlflow-authz/mlflow-authz/integration/loadgen"
)

// envPool lists TestBench's reports (bench-*.json; separated by spaces or
// commas) for TestPool to pool.
const envPool = "MLFLOW_AUTHZ_BENCH_POOL"

// TestPool prints the p99 gap at the fixed rate over the pairs of several
// reports taken together, scale by scale. On a shared machine one run of
// nine pairs cannot tell the target met or missed (docs/performance.md,
// the tail, item 13); the pairs of several runs of one machine's state
// can, and pooling them is what this does, with the same interval and
// verdict as each report's.
func TestPool(t *testing.T) {
	v := os.Getenv(envPool)
	if v == "" {
		t.Skip(envPool + " not set")
	}
	var reps []report
	for _, path := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		var r report
		require.NoError(t, json.Unmarshal(b, &r), path)
		reps = append(reps, r)
	}
	pooled, err := poolReports(reps)
	require.NoError(t, err)
	for _, p := range pooled {
		fmt.Printf("scale %g, %d reports: p99 gap at %d rps, service minus floor: %v\n", p.scale, p.reports, fixedRate, p.gap)
	}
}

// pooledScale is the pooled gap of one scale.
type pooledScale struct {
	scale   float64
	reports int // how many reports had pairs at this scale
	gap     pairGap
}

// rhythm is how a report's pairs were run. Pairs run otherwise are not
// pooled: the length of a run, its slices, a spinning floor or a baseline
// taking turns (which changes how often a key comes back, and the
// re-reads with it) each move the gap.
func (r report) rhythm() string {
	baseline := slices.ContainsFunc(r.Scales, func(s scaleReport) bool { return s.Baseline != nil })
	return fmt.Sprintf("%g s runs in %d slices, floor spin %q, baseline %t", r.Seconds, r.Slices, r.FloorSpin, baseline)
}

// poolReports pools the fixed-rate pairs of reps, scale by scale, in the
// order the scales first appear. Every report must have run its pairs in
// the first one's rhythm, and each scale's fixed-rate results must be
// service and floor pairs.
func poolReports(reps []report) ([]pooledScale, error) {
	if len(reps) == 0 {
		return nil, errors.New("no reports to pool")
	}
	type pairs struct {
		reports int
		ps, pf  []float64
	}
	var order []float64
	by := map[float64]*pairs{}
	want := reps[0].rhythm()
	for i, r := range reps {
		if got := r.rhythm(); got != want {
			return nil, fmt.Errorf("report %d ran its pairs as %s, report 1 as %s: not pooled", i+1, got, want)
		}
		for _, s := range r.Scales {
			if len(s.Open)%2 != 0 {
				return nil, fmt.Errorf("report %d, scale %g: %d fixed-rate results, not pairs", i+1, s.Scale, len(s.Open))
			}
			p := by[s.Scale]
			if p == nil {
				p = &pairs{}
				by[s.Scale] = p
				order = append(order, s.Scale)
			}
			p.reports++
			for j := 0; j < len(s.Open); j += 2 {
				svc, floor := s.Open[j], s.Open[j+1]
				if svc.Label != "service" || floor.Label != "floor" {
					return nil, fmt.Errorf("report %d, scale %g: pair %d is %q and %q, not service and floor", i+1, s.Scale, j/2+1, svc.Label, floor.Label)
				}
				p.ps, p.pf = append(p.ps, svc.LatencyUS.P99), append(p.pf, floor.LatencyUS.P99)
			}
		}
	}
	out := make([]pooledScale, 0, len(order))
	for _, sc := range order {
		p := by[sc]
		out = append(out, pooledScale{scale: sc, reports: p.reports, gap: p99Gap(p.ps, p.pf, gapDraws, 1)})
	}
	return out, nil
}

func TestPoolReports(t *testing.T) {
	pair := func(svc, floor float64) []loadgen.Result {
		return []loadgen.Result{
			{Label: "service", LatencyUS: loadgen.Latency{P99: svc}},
			{Label: "floor", LatencyUS: loadgen.Latency{P99: floor}},
		}
	}
	run := func(scale float64, gaps ...float64) scaleReport {
		s := scaleReport{Scale: scale}
		for i, g := range gaps {
			f := 3000 + 100*float64(i)
			s.Open = append(s.Open, pair(f+g, f)...)
		}
		return s
	}
	rep := func(scales ...scaleReport) report { return report{Seconds: 10, Slices: 1, Scales: scales} }

	t.Run("the pairs of every report, scale by scale", func(t *testing.T) {
		// Three pairs at +400 µs and three at +800: neither report alone
		// has the five pairs a verdict needs; together, the gap is the
		// median of six pairs and every draw lies between the two.
		a := rep(run(1, 400, 400, 400), run(0.1, 100))
		b := rep(run(1, 800, 800, 800))
		got, err := poolReports([]report{a, b})
		require.NoError(t, err)
		require.Len(t, got, 2)
		assert.Equal(t, 1.0, got[0].scale)
		assert.Equal(t, 2, got[0].reports)
		g := got[0].gap
		assert.Equal(t, 6, g.Pairs)
		assert.Equal(t, p99Gap([]float64{3400, 3500, 3600, 3800, 3900, 4000}, []float64{3000, 3100, 3200, 3000, 3100, 3200}, gapDraws, 1), g)
		assert.Equal(t, 600.0, g.MedianOfDifferencesUS)
		assert.GreaterOrEqual(t, g.Interval90US[0], 400-200.0)
		assert.LessOrEqual(t, g.Interval90US[1], 800+200.0)
		alone, err := poolReports([]report{a})
		require.NoError(t, err)
		assert.Equal(t, "too few pairs to tell", alone[0].gap.verdict(500))
		assert.Equal(t, 0.1, got[1].scale)
		assert.Equal(t, 1, got[1].reports)
		assert.Equal(t, 1, got[1].gap.Pairs)
	})

	t.Run("reports run in another rhythm are refused", func(t *testing.T) {
		b := rep(run(1, 800))
		b.Scales[0].Baseline = &baselineReport{Binary: "old"}
		_, err := poolReports([]report{rep(run(1, 400)), b})
		require.ErrorContains(t, err, "report 2 ran its pairs as 10 s runs in 1 slices, floor spin \"\", baseline true")
		c := rep(run(1, 800))
		c.Seconds = 3
		_, err = poolReports([]report{rep(run(1, 400)), c})
		require.ErrorContains(t, err, "report 2 ran its pairs as 3 s runs")
	})

	t.Run("results that are not service and floor pairs are refused", func(t *testing.T) {
		s := run(1, 400, 400)
		s.Open[2], s.Open[3] = s.Open[3], s.Open[2]
		_, err := poolReports([]report{rep(s)})
		require.ErrorContains(t, err, `report 1, scale 1: pair 2 is "floor" and "service", not service and floor`)
		s = run(1, 400)
		s.Open = s.Open[:1]
		_, err = poolReports([]report{rep(s)})
		require.ErrorContains(t, err, "report 1, scale 1: 1 fixed-rate results, not pairs")
	})

	t.Run("no reports", func(t *testing.T) {
		_, err := poolReports(nil)
		require.EqualError(t, err, "no reports to pool")
	})
}
