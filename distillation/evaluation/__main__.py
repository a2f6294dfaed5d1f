"""``python -m distillation.evaluation`` = ``python -m distillation.evaluate``."""

from distillation.evaluate import main

if __name__ == "__main__":
    main()
