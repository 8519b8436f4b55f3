"""The test suite, a package: helpers import by their full name (`from tests.video_fixtures
import make_video`), from the repository root that pytest puts on the path (rootdir, default
"prepend" import mode: the first folder above the tests without an `__init__.py`)."""
