package celpred

import (
	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"

	celconfig "k8s.io/apiserver/pkg/apis/cel"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/library"
)

// newBaseEnv returns the Kubernetes CEL base environment: the compile-time
// options and libraries of the StoredExpressions environment of
// k8s.io/apiserver/pkg/cel/environment.MustBaseEnvSet (Kubernetes 1.37), in
// the same order and at the same library versions, without its program
// options.
//
// Why not MustBaseEnvSet itself: every program planned from it tracks its
// cost (cel.OptTrackCost is among the environment's program options, and
// cel-go offers no way to drop one), which makes a simple predicate 4-5 times
// slower. Faro sets the cost limit per program instead (see programOptions
// and Predicate.Eval). TestBaseEnvMatchesKubernetes fails if this list
// drifts from the apiserver's (same libraries, functions, overloads, macros
// and validators), so an expression that compiles in an admission policy
// compiles here.
func newBaseEnv(extra ...cel.EnvOption) (*cel.Env, error) {
	opts := []cel.EnvOption{
		// environment.baseOpts, Kubernetes 1.0 and later
		cel.HomogeneousAggregateLiterals(),
		cel.EagerlyValidateDeclarations(true),
		cel.DefaultUTCTimeZone(true),
		library.URLs(),
		library.Regex(),
		cel.CostEstimatorOptions(checker.PresenceTestHasCost(false)),
		// 1.27
		library.Authz(),
		// 1.28
		cel.CrossTypeNumericComparisons(true),
		cel.OptionalTypes(),
		library.Quantity(),
		// 1.29
		cel.ASTValidators(
			cel.ValidateDurationLiterals(),
			cel.ValidateTimestampLiterals(),
			cel.ValidateRegexLiterals(),
			cel.ValidateHomogeneousAggregateLiterals(),
		),
		ext.Strings(ext.StringsVersion(2)),
		ext.Sets(),
		// 1.30
		library.IP(),
		library.CIDR(),
		// 1.31
		library.Format(),
		library.AuthzSelectors(),
		// 1.32
		ext.TwoVarComprehensions(),
		// 1.33
		library.SemverLib(library.SemverVersion(1)),
		// 1.34
		ext.Lists(ext.ListsVersion(3)),
		// 1.37 (replaces library.Lists(library.ListsVersion(0)))
		library.Lists(library.ListsVersion(1)),
	}
	return cel.NewEnv(append(opts, extra...)...)
}

// extendEnv adds declarations to env, registering the OpenAPI-derived types
// they use, as environment.EnvSet.Extend does.
func extendEnv(env *cel.Env, declTypes []*apiservercel.DeclType, opts ...cel.EnvOption) (*cel.Env, error) {
	if len(declTypes) > 0 {
		provider := apiservercel.NewDeclTypeProvider(declTypes...)
		// Kubernetes 1.31+: object.metadata.namespace and other fields named
		// like CEL reserved words can be selected without escaping.
		provider.SetRecognizeKeywordAsFieldName(true)
		providerOpts, err := provider.EnvOptions(env.CELTypeProvider())
		if err != nil {
			return nil, err
		}
		opts = append(opts, providerOpts...)
	}
	return env.Extend(opts...)
}

// programOptions returns the options of the two programs planned for each
// expression: tracked, with the run-time cost limit (the cost model and
// has() pricing of the apiserver's environment), and untracked, used when
// the cost limit is known not to be reachable (see Predicate.Eval).
func programOptions(costLimit uint64) (tracked, untracked []cel.ProgramOption) {
	untracked = []cel.ProgramOption{
		cel.EvalOptions(cel.OptOptimize),
		cel.InterruptCheckFrequency(celconfig.CheckFrequency),
	}
	tracked = append([]cel.ProgramOption{
		cel.CostTracking(&library.CostEstimator{}),
		cel.CostTrackerOptions(interpreter.PresenceTestHasCost(false)),
		cel.CostLimit(costLimit),
	}, untracked...)
	return tracked, untracked
}
