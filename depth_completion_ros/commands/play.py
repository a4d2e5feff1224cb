"""`dcros play`: replay a bag (rosbag2 sqlite3/MCAP folder, bare .mcap/.db3, ROS 1 .bag) as live ROS 2 topics
through rclpy, without rosbag2; the replay itself is `depth_completion_ros.ros.player`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "replay a bag (rosbag2, .mcap, ROS 1 .bag) as live ROS 2 topics through rclpy, without rosbag2"

QOS_MODES = ("bag", "reliable", "sensor_data")  # ros.player.QOS_MODES (not imported here: keeps --help fast)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, metavar="BAG",
                        help="a rosbag2 folder, a .mcap or .db3 file, or a ROS 1 .bag (put it before the options "
                             "that take several values: --topics, --remap, --clock)")
    parser.add_argument("-r", "--rate", type=float, default=1.0, help="playback speed factor (default: %(default)s)")
    parser.add_argument("-l", "--loop", action="store_true", help="play the bag again and again until Ctrl-C")
    parser.add_argument("--start-offset", type=float, default=0.0, metavar="S",
                        help="start S seconds after the bag's first message; latched topics (/tf_static) before "
                             "it are still published at the start (default: %(default)s)")
    parser.add_argument("--clock", type=float, nargs="?", const=40.0, default=None, metavar="HZ",
                        help="publish /clock (rosgraph_msgs/Clock) with the bag time at HZ (40 without a value), "
                             "for nodes with use_sim_time")
    parser.add_argument("-m", "--remap", nargs="+", action="extend", default=[], metavar="OLD:=NEW",
                        help="publish bag topic OLD as NEW (repeatable)")
    parser.add_argument("--topics", nargs="+", default=None, metavar="TOPIC", help="play only these topics")
    parser.add_argument("--exclude-topics", nargs="+", default=[], metavar="TOPIC", help="leave these topics out")
    parser.add_argument("--qos", choices=QOS_MODES, default="bag",
                        help="publisher QoS of the topics other than /tf and /tf_static (which are always reliable, "
                             "/tf_static transient local): 'bag' the recorded reliability and durability, else "
                             "reliable (as ros2 bag play); 'reliable'; 'sensor_data' best effort, keep last 5 "
                             "(reaches best-effort subscribers only); default: %(default)s")
    parser.add_argument("-d", "--delay", type=float, default=0.0, metavar="S",
                        help="sleep S seconds before each pass, e.g. for the publishers to be discovered "
                             "(default: %(default)s)")
    parser.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="S",
                        help="before playing, wait up to S seconds until every topic has a subscriber "
                             "(default: no wait)")
    parser.add_argument("--wait-for-all-acked", type=int, default=1000, metavar="MS",
                        help="at the end, wait up to MS milliseconds until reliable subscribers acknowledged every "
                             "message; 0: no limit, negative: no wait (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from depth_completion_ros.ros.player import PlayOptions, RosUnavailableError, parse_remap, play

    remap = dict(parse_remap(text) for text in args.remap)
    options = PlayOptions(rate=args.rate, loop=args.loop, start_offset=args.start_offset, clock_hz=args.clock,
                          remap=remap, topics=args.topics, exclude_topics=args.exclude_topics, qos=args.qos,
                          delay=args.delay, wait_for_subscribers=args.wait_for_subscribers,
                          wait_for_all_acked=args.wait_for_all_acked / 1000.0)
    options.validate()

    def ready(result) -> None:
        playing = [r for r in result.topics.values() if r.skipped is None]
        print(f"playing {args.bag}: {len(playing)} of {len(result.topics)} topics at rate {args.rate:g}"
              f"{', looping' if args.loop else ''}; Ctrl-C stops", flush=True)

    try:
        result = play(args.bag, options, on_ready=ready)
    except RosUnavailableError as error:
        print(f"dcros play: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before the replay began (while loading the bag or starting ROS)
        print("dcros play: interrupted before the replay began", file=sys.stderr)
        return 130
    print(result.summary(), flush=True)
    return 0
