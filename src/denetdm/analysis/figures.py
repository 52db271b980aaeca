"""The paper's theory figures as analysis settings (no imports: `denetdm --help` lists them quickly)."""

FIGURES = {
    "2a": {"mode": "init", "models": ["mlp:3", "mlp:4", "mlp:5"], "seeds": [0, 1, 2, 3, 4]},
    "2b": {"mode": "erm", "models": ["mlp:3", "mlp:5"], "iterations": list(range(0, 176, 25))},
    "3": {"mode": "denetdm", "iterations": list(range(0, 22, 3))},
    "4": {"mode": "erm", "models": ["resnet20", "cnn3"], "iterations": list(range(0, 161, 20))},
}
