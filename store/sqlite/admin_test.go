package sqlite_test

import (
	"testing"

	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

func TestAdminConformance(t *testing.T) { storetest.AdminRun(t, openSplit) }

// TestAdminConformanceOneFile: tracking and auth tables in one file.
func TestAdminConformanceOneFile(t *testing.T) { storetest.AdminRun(t, openOneFile) }
