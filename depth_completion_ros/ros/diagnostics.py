"""/diagnostics as diagnostic_updater publishes it, without diagnostic_updater (which ROS 2 from the Python
package registry does not have; the node uses this on every ROS 2, so both tiers publish the same).

What a diagnostics aggregator, `ros2 topic echo /diagnostics` or rqt_robot_monitor sees is diagnostic_updater's
layout: one diagnostic_msgs/DiagnosticArray per period on `/diagnostics` (reliable, keep last 1), stamped with
the node's clock, holding one DiagnosticStatus per task named "<node name>: <task name>", with the node's
hardware id. The period is diagnostic_updater's parameter `diagnostic_updater.period` (seconds, default 1.0,
read at start-up). The timer runs on the steady clock, so that the reports go on while a replayed bag's
simulated clock stands still.
"""
from __future__ import annotations

from typing import Callable, Sequence

from .monitoring import DiagnosticSummary

TOPIC = "/diagnostics"
PERIOD_PARAMETER = "diagnostic_updater.period"
DEFAULT_PERIOD_S = 1.0

Task = tuple[str, Callable[[], DiagnosticSummary]]


def diagnostic_status(summary: DiagnosticSummary, name: str, hardware_id: str):
    """A diagnostic_msgs/DiagnosticStatus holding `summary`."""
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    return DiagnosticStatus(level=bytes([summary.level]), name=name, message=summary.message, hardware_id=hardware_id,
                            values=[KeyValue(key=key, value=value) for key, value in summary.values.items()])


class DiagnosticsPublisher:
    """Runs `tasks` ((name, () -> DiagnosticSummary) pairs) every period and publishes their statuses."""

    def __init__(self, node, hardware_id: str, tasks: Sequence[Task]):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.clock import Clock, ClockType
        from rclpy.parameter import Parameter

        self._node = node
        self.hardware_id = hardware_id
        self._tasks = list(tasks)
        if not node.has_parameter(PERIOD_PARAMETER):
            node.declare_parameter(PERIOD_PARAMETER, DEFAULT_PERIOD_S)
        period = node.get_parameter(PERIOD_PARAMETER)
        if period.type_ != Parameter.Type.DOUBLE or not period.value > 0:
            raise ValueError(f"parameter {PERIOD_PARAMETER!r} must be a positive floating-point number of seconds, "
                             f"got {period.value!r}")
        self.period_s = float(period.value)
        self._publisher = node.create_publisher(DiagnosticArray, TOPIC, 1)
        self._timer = node.create_timer(self.period_s, self.publish, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def statuses(self) -> list:
        """One DiagnosticStatus per task, as diagnostic_updater names and fills them."""
        return [diagnostic_status(task(), f"{self._node.get_name()}: {name}", self.hardware_id)
                for name, task in self._tasks]

    def publish(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        array = DiagnosticArray(status=self.statuses())
        array.header.stamp = self._node.get_clock().now().to_msg()
        self._publisher.publish(array)
