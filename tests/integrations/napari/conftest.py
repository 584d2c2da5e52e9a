"""What the widget tests share: the notifications napari shows while a test runs."""

import pytest
from napari.utils.notifications import NotificationSeverity, notification_manager


class Notifications(list):
    """The notifications shown so far, in order."""

    def errors(self) -> list[str]:
        """The messages of the error notifications: how a widget answers a user's mistake."""
        return [n.message for n in self if n.severity == NotificationSeverity.ERROR]


@pytest.fixture
def notifications():
    seen = Notifications()
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)
