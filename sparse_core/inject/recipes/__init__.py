"""One module per codebase; each lists its recipes (`engine.Recipe`) in `RECIPES`. The engine collects every
module of this package, so a new module needs no registration."""
