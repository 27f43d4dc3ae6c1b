"""The dashboard's process: Shiny for Python (shiny/app.py, which `clickstream up` starts) or R Shiny (shiny/app.R,
`clickstream dashboard --r`), on 127.0.0.1, both reading the warehouse as dashboard_reader from the libpq URI in
CLICKSTREAM_DASHBOARD_DSN.

`python -m clickstream.local.dashboard --host H --port P` serves shiny/app.py (the command `up` records and
`down` stops by pid).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Mapping

from clickstream.settings import project_root

DSN_ENV = "CLICKSTREAM_DASHBOARD_DSN"
R_PACKAGES = ("r-base-core", "r-cran-shiny", "r-cran-dbi", "r-cran-rpostgresql", "r-cran-ggplot2")
NO_R = ("Rscript is not on PATH: install R and the app's packages (Debian's; CRAN is not needed):\n"
        f"  apt-get install -y --no-install-recommends {' '.join(R_PACKAGES)}")


class DashboardError(RuntimeError):
    """The dashboard cannot start; the message says what to do."""


def app_path(project: Path, r: bool = False) -> Path:
    """shiny/app.py, or shiny/app.R with `r`, of the project."""
    path = project / "shiny" / ("app.R" if r else "app.py")
    if not path.is_file():
        raise DashboardError(f"{path} is missing: run the dashboard from the project's repository")
    return path


def app_env(env: Mapping[str, str], reader_dsn: str) -> dict[str, str]:
    """`env` plus the DSN both apps read."""
    return {**env, DSN_ENV: reader_dsn}


def r_argv(project: Path, host: str, port: int) -> list[str]:
    """Rscript running shiny/app.R on host:port, or a DashboardError saying how to install R."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        raise DashboardError(NO_R)
    app = json.dumps(str(app_path(project, r=True).resolve()))  # a double-quoted string R reads as it is
    return [rscript, "-e", f'shiny::runApp({app}, port={int(port)}, host={json.dumps(host)}, launch.browser=FALSE)']


def main() -> None:
    import shiny

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if not os.environ.get(DSN_ENV):
        parser.error(f"the warehouse's DSN is needed in {DSN_ENV} (dashboard_reader's libpq URI)")
    app = app_path(project_root())
    shiny.run_app(f"{app.stem}:app", host=args.host, port=args.port, app_dir=str(app.parent), log_level="warning",
                  launch_browser=False, dev_mode=False)


if __name__ == "__main__":
    main()
