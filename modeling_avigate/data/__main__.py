"""`python -m modeling_avigate.data OUT_DIR [--seed S] [--preset default|quick]` writes the synthetic benchmark."""

from .synthetic import main


main()
