package sqlite_test

import (
	"testing"

	"github.com/mlflow-authz/mlflow-authz/store/storetest"
)

func TestAdminConformance(t *testing.T) { storetest.AdminRun(t, openSplit) }

// TestRolesConformance: MLflow 3.12+'s roles layout, made by its own
// migrations.
func TestRolesConformance(t *testing.T) { storetest.RolesRun(t, openSplit) }

// TestAdminConformanceOneFile: tracking and auth tables in one file.
func TestAdminConformanceOneFile(t *testing.T) { storetest.AdminRun(t, openOneFile) }

// TestRolesConformanceOneFile: the roles layout with the tracking tables in
// the same file.
func TestRolesConformanceOneFile(t *testing.T) { storetest.RolesRun(t, openOneFile) }
