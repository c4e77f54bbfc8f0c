package envoyheader_test

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/stretchr/testify/assert"

	"github.com/mlflow-authz/mlflow-authz/authz/envoyheader"
)

func TestFlatten(t *testing.T) {
	m := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "X-Request-Id", RawValue: []byte("rid")},
		{Key: "accept", Value: "a"},
		{Key: "Accept", RawValue: []byte("b")},
		{Key: "cookie", RawValue: []byte("a=1")},
		{Key: "cookie", RawValue: []byte("session=x")},
		{Key: "x-both", Value: "ignored", RawValue: []byte("raw wins")},
		{Key: "x-empty"},
	}}
	assert.Equal(t, map[string]string{
		"x-request-id": "rid",
		"accept":       "a,b",
		"cookie":       "a=1,session=x", // as Envoy's map form: a comma, cookies too
		"x-both":       "raw wins",
		"x-empty":      "",
	}, envoyheader.Flatten(m))
	assert.Empty(t, envoyheader.Flatten(nil))
}
