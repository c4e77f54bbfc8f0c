package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mlflow-authz/mlflow-authz/authz/extauthz"
)

func newCheckCommand() *cobra.Command {
	var (
		server, host, token, tokenFile, principal, body string
		headers                                         []string
	)
	cmd := &cobra.Command{
		Use:   "check METHOD TARGET",
		Short: "Send one CheckRequest, shaped as Istio sends it, to a running server",
		Example: `  mlflow-authz check --server 127.0.0.1:9191 --host mlflow.localhost \
    --token "$TOKEN" GET '/api/2.0/mlflow/experiments/get?experiment_id=1'`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tokenFile != "" {
				data, err := os.ReadFile(tokenFile)
				if err != nil {
					return err
				}
				token = strings.TrimSpace(string(data))
			}
			call := extauthz.Call{Method: strings.ToUpper(args[0]), Host: host, Target: args[1],
				Principal: principal, Headers: map[string]string{}, RequestID: "cli-check"}
			if token == "" {
				token = os.Getenv("MLFLOW_AUTHZ_TOKEN")
			}
			if token != "" {
				call.Headers["authorization"] = "Bearer " + token
			}
			for _, h := range headers {
				k, v, ok := strings.Cut(h, ":")
				if !ok {
					return usageError{fmt.Errorf("--header %q is not name:value", h)}
				}
				call.Headers[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
			if body != "" {
				call.Body = []byte(body)
				if _, ok := call.Headers["content-type"]; !ok {
					call.Headers["content-type"] = "application/json"
				}
			}
			res, err := checkOnce(cmd.Context(), server, call)
			if err != nil {
				return err
			}
			printResult(cmd.OutOrStdout(), res)
			if !res.Allowed {
				return errDenied
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "127.0.0.1:9191", "gRPC address of mlflow-authz")
	f.StringVar(&host, "host", "mlflow.localhost", "the request's Host")
	f.StringVar(&token, "token", "", "Bearer token (default: $MLFLOW_AUTHZ_TOKEN)")
	f.StringVar(&tokenFile, "token-file", "", "file holding the Bearer token")
	f.StringVar(&principal, "principal", "", "mTLS peer SPIFFE ID (source.principal)")
	f.StringVar(&body, "body", "", "request body (JSON)")
	f.StringArrayVar(&headers, "header", nil, "extra header name:value (repeatable)")
	return cmd
}

// errDenied makes `check` exit 1 on a deny, so scripts can test decisions.
var errDenied = errors.New("denied")

func checkOnce(ctx context.Context, server string, call extauthz.Call) (extauthz.Result, error) {
	conn, err := grpc.NewClient(server, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return extauthz.Result{}, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, call.CheckRequest())
	if err != nil {
		return extauthz.Result{}, fmt.Errorf("check %s: %w", server, err)
	}
	return extauthz.ReadResponse(resp), nil
}

func printResult(w io.Writer, res extauthz.Result) {
	if res.Allowed {
		fmt.Fprintln(w, "ALLOW")
		for k, v := range res.Set {
			fmt.Fprintf(w, "  set    %s: %s\n", k, v)
		}
		for _, k := range res.Removed {
			fmt.Fprintf(w, "  remove %s\n", k)
		}
		return
	}
	fmt.Fprintf(w, "DENY %d %s: %s\n", res.Status, res.Reason, res.Message)
}
