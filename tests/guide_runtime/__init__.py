"""A team's own job runtime, written for porter's tests from the porting guide's contract
alone (README, "Your own runtime"): what porter's output must run on unchanged.

Strict on purpose: keyword-only logger methods with no `**kwargs`, public wrappers
that record every call, no save hook, nothing of porter's imported.
"""
