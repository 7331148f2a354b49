// Builds the Pulumi engine (the `pulumi` command) that the engine test tier runs.
// github.com/pulumi/pulumi/pkg/v3 cannot be installed with `go install …@version` because its
// go.mod has replace lines; this module requires it and repeats them.
module dstack.test/engine

go 1.26.6

require (
	github.com/pulumi/pulumi/pkg/v3 v3.274.0
	github.com/pulumi/pulumi/sdk/v3 v3.274.0
)

// Repeated from github.com/pulumi/pulumi/pkg/v3's go.mod (its `sdk/v3 => ../sdk` is the
// required sdk/v3 version above).
replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
