package postgres_test

import (
	"testing"

	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

func TestAdminConformance(t *testing.T) { storetest.AdminRun(t, openSplit) }
