//go:build tools

// Package engine only pins the packages this module builds.
package engine

import (
	_ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
)
