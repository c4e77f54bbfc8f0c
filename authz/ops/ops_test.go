package ops

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func get(t *testing.T, srv *httptest.Server, path string) (int, map[string]any) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body map[string]any
	if resp.Header.Get("Content-Type") == "application/json" {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	}
	return resp.StatusCode, body
}

func TestReadiness(t *testing.T) {
	var h Health
	storeErr := errors.New("connection refused")
	h.SetChecks(
		ReadyCheck{Name: "config", Check: func(context.Context) error { return nil }},
		ReadyCheck{Name: "store", Check: func(context.Context) error { return storeErr }},
	)
	reg := prometheus.NewRegistry()
	srv := httptest.NewServer(h.Handler(Options{Gatherer: reg}))
	defer srv.Close()

	code, _ := get(t, srv, "/healthz")
	assert.Equal(t, http.StatusOK, code, "liveness does not depend on readiness")

	code, body := get(t, srv, "/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, map[string]any{"store": "connection refused"}, body["failing"])

	storeErr = nil
	code, _ = get(t, srv, "/readyz")
	assert.Equal(t, http.StatusOK, code)

	h.Drain()
	code, body = get(t, srv, "/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body["failing"], "shutdown")

	code, _ = get(t, srv, "/metrics")
	assert.Equal(t, http.StatusOK, code)
	code, _ = get(t, srv, "/debug/pprof/")
	assert.Equal(t, http.StatusNotFound, code, "pprof is off unless enabled")
}

func TestPprofWhenEnabled(t *testing.T) {
	var h Health
	srv := httptest.NewServer(h.Handler(Options{Pprof: true}))
	defer srv.Close()
	code, _ := get(t, srv, "/debug/pprof/")
	assert.Equal(t, http.StatusOK, code)
}
