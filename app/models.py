"""Every domain's tables, for whoever needs the whole schema (Alembic, the tests).

The application owns this list, not `app.core`: core is imported by every domain and imports
none of them (tests/test_import_layers.py holds that).
"""

from app.accounts import models as _accounts  # noqa: F401
from app.activity import models as _activity  # noqa: F401
from app.audit import models as _audit  # noqa: F401
from app.checkins import models as _checkins  # noqa: F401
from app.core.db import Base
from app.geofences import models as _geofences  # noqa: F401
from app.ingest import models as _ingest  # noqa: F401
from app.notifications import models as _notifications  # noqa: F401
from app.offers import models as _offers  # noqa: F401
from app.open311 import models as _open311  # noqa: F401
from app.presence import models as _presence  # noqa: F401
from app.privacy import models as _privacy  # noqa: F401
from app.rules import models as _rules  # noqa: F401
from app.safety import models as _safety  # noqa: F401
from app.shifts import models as _shifts  # noqa: F401
from app.tasks import models as _tasks  # noqa: F401
from app.webhooks import models as _webhooks  # noqa: F401

metadata = Base.metadata
