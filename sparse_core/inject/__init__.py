"""`sparse-core inject`: put the Re-GAN / RG-GAN hooks into a GAN checkout by syntax-tree anchors.

The engine (`sparse_core.inject.engine`) recognises which codebase a checkout is, finds each hook point of that
codebase's recipe (`sparse_core.inject.recipes`) in the user's own files with libcst, and turns the insertions
into a unified diff that the confined applier (`sparse_core.patching`) applies all-or-nothing. See engine.py for
the recipe format and sparse_core/inject/cli.py for the command.
"""

# the --codebase names (the engine and the command line both take them from here)
CODEBASES = ("stylegan2_ada", "sngan", "fastgan", "autogan", "progan")
