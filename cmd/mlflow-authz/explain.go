package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	v1 "github.com/mlflow-authz/mlflow-authz/proto/mlflowauthz/v1"
)

func newExplainCommand() *cobra.Command {
	var (
		c                                     adminConn
		host, body, asToken, asTokenFile, who string
		principal                             string
		groups, headers                       []string
	)
	cmd := &cobra.Command{
		Use:   "explain METHOD TARGET",
		Short: "Decide one request as Check would and print every step behind the decision",
		Long: `explain runs one request through the same engine code as Check, with a trace: the
application, the identity, the route, the ids and where they came from, the resource they
resolve to, every permission source, and the decision with its reason.

The identity is a token (--as-token or --as-token-file, verified by the configured
issuers) or a user with groups (--user alice --groups /team-a) standing in for one.
Locally (--config FILE) the engine is built from the file against its store; with
--server it is the running service's live engine, reached through the admin API.
Exits 0 on allow, 1 on deny, 2 on bad usage.`,
		Example: `  mlflow-authz explain --config config.yaml --user alice --groups /team-a \
    GET '/api/2.0/mlflow/experiments/get?experiment_id=1'`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if asTokenFile != "" {
				data, err := os.ReadFile(asTokenFile)
				if err != nil {
					return err
				}
				asToken = strings.TrimSpace(string(data))
			}
			if asToken != "" && who != "" {
				return usageError{errors.New("give --as-token or --user, not both")}
			}
			if who == "" && len(groups) > 0 {
				return usageError{errors.New("--groups needs --user")}
			}
			req := &v1.ExplainRequest{Method: strings.ToUpper(args[0]), Target: args[1], Host: host, Token: asToken,
				User: who, Groups: groups, Principal: principal, Headers: map[string]string{}}
			if body != "" {
				req.Body = []byte(body)
			}
			for _, h := range headers {
				k, v, ok := strings.Cut(h, ":")
				if !ok {
					return usageError{fmt.Errorf("--header %q is not name:value", h)}
				}
				req.Headers[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
			var allowed bool
			err := adminCall(cmd, &c, true,
				func(ctx context.Context, cl v1.AdminServiceClient) (*v1.ExplainResponse, error) {
					resp, err := cl.Explain(ctx, req)
					allowed = err == nil && resp.Allowed
					return resp, err
				},
				printExplanation)
			if err == nil && !allowed {
				return errDenied
			}
			return err
		},
	}
	c.addFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&host, "host", "mlflow.localhost", "the request's Host")
	f.StringVar(&body, "body", "", "request body (JSON)")
	f.StringVar(&asToken, "as-token", "", "explain as the bearer of this token")
	f.StringVar(&asTokenFile, "as-token-file", "", "file holding the token to explain as")
	f.StringVar(&who, "user", "", "explain as this MLflow user (no token needed)")
	f.StringSliceVar(&groups, "groups", nil, "the --user's groups")
	f.StringVar(&principal, "principal", "", "mTLS peer SPIFFE ID (source.principal)")
	f.StringArrayVar(&headers, "header", nil, "extra header name:value (repeatable)")
	return cmd
}

func printExplanation(w io.Writer, resp *v1.ExplainResponse) error {
	if resp.Allowed {
		fmt.Fprintf(w, "ALLOW (app %s, reason %s)\n\n", resp.App, resp.Reason)
	} else {
		fmt.Fprintf(w, "DENY %d %s: %s\n\n", resp.Status, resp.Reason, resp.Message)
	}
	rows := make([][]string, len(resp.Steps))
	for i, s := range resp.Steps {
		rows[i] = []string{strconv.Itoa(i + 1), s.Stage, s.Detail}
	}
	return printTable(w, []string{"STEP", "STAGE", "DETAIL"}, rows)
}
