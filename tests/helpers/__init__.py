"""What tests share: recipe-shaped sources, fork shapes and the components that train them,
faults to inject, checks of upstream recipes, a Slurm cluster, a browser, job folders."""
