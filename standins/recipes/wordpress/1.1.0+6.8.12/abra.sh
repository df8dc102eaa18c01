# No config files in this recipe: WordPress reads its settings from the environment.
