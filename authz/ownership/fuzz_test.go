package ownership_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/mlflow-authz/mlflow-authz/authz"
	"github.com/mlflow-authz/mlflow-authz/authz/mlflow"
	"github.com/mlflow-authz/mlflow-authz/store"
)

// capture is a Recorder that keeps the last call, to see which names the
// policy read from a body.
type capture struct {
	calls         int
	name, newName string
}

func (c *capture) RecordCreate(_ context.Context, n store.TrackedName, _ string, _ time.Duration) {
	c.calls++
	c.name = n.Name
}

func (c *capture) RecordRename(_ context.Context, n store.TrackedName, to string, _ time.Duration) {
	from := n.Name
	c.calls++
	c.name, c.newName = from, to
}

func (c *capture) RecordDelete(_ context.Context, n store.TrackedName, _ time.Duration) {
	c.calls++
	c.name = n.Name
}

// FuzzRecordedNames: whatever the body, a name handed to the recorder is
// exactly the one MLflow would act on (Python's json keeps the last of a
// duplicate key, as Go's map does; protobuf's parser accepts new_name or
// newName), so a grant can never land on a name MLflow did not create.
func FuzzRecordedNames(f *testing.F) {
	for _, s := range []string{
		`{"name": "a"}`, `{"name": "a", "name": "b"}`, `{"name": 1}`, `{"name": ""}`, `{}`, `[]`, `{"name": "a"} x`,
		`{"name": "m", "new_name": "n"}`, `{"name": "m", "newName": "n"}`, `{"name": "m", "new_name": "n", "newName": "o"}`,
		`{"name": "\u00e9\ud800"}`, `{"Name": "x"}`,
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	e := openSQLite(f)
	var c capture
	p, err := mlflow.New(e.admin, mlflow.Config{Recorder: &c}, nil)
	if err != nil {
		f.Fatal(err)
	}
	admin := &authz.Identity{Kind: authz.KindUser, Username: "root", Admin: true, Method: "jwt"}
	f.Fuzz(func(t *testing.T, body string, rename bool) {
		target := "/api/2.0/mlflow/registered-models/create"
		if rename {
			target = "/api/2.0/mlflow/registered-models/rename"
		}
		req, d := authz.NewRequest(authz.RequestInput{Method: "POST", Host: "mlflow", Target: target, Body: []byte(body),
			Headers: map[string]string{"content-type": "application/json"}})
		if d != nil {
			t.Fatalf("request refused: %v", d.Message)
		}
		c = capture{}
		got := p.Decide(context.Background(), req, admin)
		if c.calls == 0 {
			return
		}
		if !got.Allowed {
			t.Fatalf("recorded a request that was denied: %+v", got)
		}
		if c.calls != 1 {
			t.Fatalf("recorded %d times", c.calls)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatalf("recorded from a body MLflow cannot parse: %v", err)
		}
		if s, ok := m["name"].(string); !ok || s != c.name || s == "" {
			t.Fatalf("recorded name %q, MLflow reads %#v", c.name, m["name"])
		}
		if rename {
			a, hasA := m["new_name"]
			b, hasB := m["newName"]
			if hasA == hasB {
				t.Fatalf("recorded new name %q from a body with new_name=%v and newName=%v", c.newName, hasA, hasB)
			}
			want := a
			if hasB {
				want = b
			}
			if s, ok := want.(string); !ok || s != c.newName || s == "" {
				t.Fatalf("recorded new name %q, MLflow reads %#v", c.newName, want)
			}
		}
	})
}
