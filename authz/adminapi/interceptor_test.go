package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	v1 "github.com/mlflow-authz/mlflow-authz/proto/mlflowauthz/v1"
)

// TestEveryMethodHasAnAuditAction: the interceptor refuses a method it has no
// action for, so a method added to the proto must be added to actions too.
func TestEveryMethodHasAnAuditAction(t *testing.T) {
	sd := v1.AdminService_ServiceDesc
	assert.Empty(t, sd.Streams, "Register serves no streaming method: the unary interceptor could not guard it")
	seen := map[string]bool{}
	for _, m := range sd.Methods {
		full := "/" + sd.ServiceName + "/" + m.MethodName
		assert.NotEmpty(t, actions[full], "%s has no audit action", full)
		seen[full] = true
	}
	for full := range actions {
		assert.True(t, seen[full], "actions names %s, which the service does not have", full)
	}
}

// TestUnknownMethodIsRefused: a method of the admin service that the
// interceptor does not know is refused and audited, never passed on.
func TestUnknownMethodIsRefused(t *testing.T) {
	var buf bytes.Buffer
	s := New(Options{Log: slog.New(slog.NewJSONHandler(&buf, nil))})
	called := false
	resp, err := s.intercept(t.Context(), &v1.ListUsersRequest{},
		&grpc.UnaryServerInfo{FullMethod: "/mlflowauthz.v1.AdminService/DropTables"},
		func(context.Context, any) (any, error) { called = true; return &v1.ListUsersResponse{}, nil })
	assert.Nil(t, resp)
	assert.False(t, called, "the handler must not run")
	assert.Equal(t, codes.PermissionDenied, status.Code(err))
	assert.Equal(t, "adminapi: /mlflowauthz.v1.AdminService/DropTables has no audit action; refused", status.Convert(err).Message())
	var l map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &l))
	assert.Equal(t, "admin_audit", l["msg"])
	assert.Equal(t, "/mlflowauthz.v1.AdminService/DropTables", l["action"])
	assert.Equal(t, "denied", l["result"])
}
