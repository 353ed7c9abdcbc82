"""What publishers send, mapped to touchpoints: Segment's tracking spec (segment.py) and CloudEvents
(cloudevent.py). Plain JSON is the touchpoint itself (journeys/touchpoint.py)."""
