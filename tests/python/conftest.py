import sys
from pathlib import Path

# fixtures/ (planted-bug models, goldens) is test data, not part of the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
