"""Intervals and greedy: problems 90026-90030."""

PROBLEMS = [
    dict(
        id=90026,
        difficulty="medium",
        signature="def coveredPoints(self, segments: List[List[int]]) -> int:",
        statement="""
        You are given a list of closed integer segments, where segments[i] = [start, end] covers every integer x with start <= x <= end.
        Return the number of distinct integers covered by at least one segment.
        """,
        examples=[
            (dict(segments=[[1, 3], [2, 6], [8, 8]]), "The covered integers are 1..6 and 8."),
            (dict(segments=[[-2, -1], [0, 0]]), None),
        ],
        constraints=["1 <= segments.length <= 10^5", "-10^9 <= start <= end <= 10^9"],
        solution="""
        class Solution:
            def coveredPoints(self, segments: List[List[int]]) -> int:
                total = 0
                cur_start = cur_end = None
                for start, end in sorted(segments):
                    if cur_end is None or start > cur_end + 1:
                        if cur_end is not None:
                            total += cur_end - cur_start + 1
                        cur_start, cur_end = start, end
                    else:
                        cur_end = max(cur_end, end)
                return total + cur_end - cur_start + 1
        """,
        tests=[
            dict(segments=[[5, 5]]),
            dict(segments=[[1, 10], [2, 3], [4, 5]]),
            dict(segments=[[1, 2], [3, 4], [6, 7]]),
            dict(segments=[[10, 20], [0, 5], [5, 10]]),
            dict(segments=[[-1000000000, 1000000000], [0, 1]]),
            dict(segments=[[(i * 7) % 30, (i * 7) % 30 + i % 4] for i in range(25)]),
        ],
    ),
    dict(
        id=90027,
        difficulty="medium",
        signature="def minStampPoints(self, segments: List[List[int]]) -> int:",
        statement="""
        You are given closed integer segments segments[i] = [start, end]. A stamp placed at integer x marks every segment that contains x.
        Return the minimum number of stamps needed so that every segment is marked at least once.
        """,
        examples=[
            (dict(segments=[[1, 4], [2, 5], [7, 9], [8, 8]]), "Stamps at 4 and 8 mark everything."),
            (dict(segments=[[1, 1], [2, 2], [3, 3]]), None),
        ],
        constraints=["1 <= segments.length <= 10^5", "-2^31 <= start <= end <= 2^31 - 1"],
        solution="""
        class Solution:
            def minStampPoints(self, segments: List[List[int]]) -> int:
                stamps = 0
                last = None
                for start, end in sorted(segments, key=lambda s: s[1]):
                    if last is None or start > last:
                        stamps += 1
                        last = end
                return stamps
        """,
        tests=[
            dict(segments=[[0, 100]]),
            dict(segments=[[1, 10], [2, 9], [3, 8], [4, 7]]),
            dict(segments=[[1, 2], [2, 3], [3, 4], [4, 5]]),
            dict(segments=[[-5, -1], [-1, 3], [3, 6], [7, 7]]),
            dict(segments=[[10, 16], [2, 8], [1, 6], [7, 12]]),
            dict(segments=[[i, i + (i % 5)] for i in range(0, 40, 2)]),
        ],
    ),
    dict(
        id=90028,
        difficulty="medium",
        signature="def peakOccupancy(self, stays: List[List[int]]) -> int:",
        statement="""
        A hotel records stays as [arrive, leave]: the guest occupies a room from time arrive up to, but not including, time leave. A guest who leaves at time t frees the room for a guest who arrives at time t.
        Return the minimum number of rooms the hotel needs to host every stay.
        """,
        examples=[
            (dict(stays=[[0, 30], [5, 10], [15, 20]]), None),
            (dict(stays=[[1, 5], [5, 9]]), "The first guest leaves at 5, exactly when the second arrives."),
        ],
        constraints=["1 <= stays.length <= 10^5", "0 <= arrive < leave <= 10^9"],
        solution="""
        class Solution:
            def peakOccupancy(self, stays: List[List[int]]) -> int:
                events = []
                for arrive, leave in stays:
                    events.append((arrive, 1))
                    events.append((leave, -1))
                events.sort()
                current = best = 0
                for _, change in events:
                    current += change
                    best = max(best, current)
                return best
        """,
        tests=[
            dict(stays=[[3, 4]]),
            dict(stays=[[1, 10], [1, 10], [1, 10]]),
            dict(stays=[[1, 2], [2, 3], [3, 4]]),
            dict(stays=[[1, 4], [2, 5], [3, 6], [4, 7], [5, 8]]),
            dict(stays=[[0, 100], [10, 20], [20, 30], [15, 25], [90, 110]]),
            dict(stays=[[i % 17, i % 17 + 5 + i % 3] for i in range(30)]),
        ],
    ),
    dict(
        id=90029,
        difficulty="medium",
        signature="def fewestHops(self, reach: List[int]) -> int:",
        statement="""
        You stand on stone 0 of a row of stones. From stone i you can hop forward to any stone i + 1, ..., i + reach[i] (a reach of 0 means you cannot leave that stone).
        Return the minimum number of hops needed to land on the last stone, or -1 if it cannot be reached.
        """,
        examples=[
            (dict(reach=[2, 3, 1, 1, 4]), "Hop from stone 0 to stone 1, then to stone 4."),
            (dict(reach=[3, 2, 1, 0, 4]), "Every route gets stuck on stone 3."),
        ],
        constraints=["1 <= reach.length <= 10^5", "0 <= reach[i] <= 10^5"],
        solution="""
        class Solution:
            def fewestHops(self, reach: List[int]) -> int:
                n = len(reach)
                hops = 0
                current_end = farthest = 0
                for i in range(n - 1):
                    if i > farthest:
                        return -1
                    farthest = max(farthest, i + reach[i])
                    if i == current_end:
                        if farthest <= i:
                            return -1
                        hops += 1
                        current_end = farthest
                        if current_end >= n - 1:
                            break
                return hops
        """,
        tests=[
            dict(reach=[0]),
            dict(reach=[0, 1]),
            dict(reach=[1, 1, 1, 1]),
            dict(reach=[10, 0, 0, 0]),
            dict(reach=[1, 2, 0, 1, 0]),
            dict(reach=[2, 0, 2, 0, 1]),
            dict(reach=[1, 1, 0, 1]),
            dict(reach=[(i * 3) % 4 + 1 for i in range(30)]),
        ],
    ),
    dict(
        id=90030,
        difficulty="medium",
        signature="def splitIntoSealedParts(self, s: str) -> List[int]:",
        statement="""
        Split the string s into as many contiguous parts as possible so that every letter appears in at most one part. Every character of s must belong to exactly one part.
        Return the lengths of the parts, from left to right.
        """,
        examples=[
            (dict(s="abacdcxyzx"), "The parts are \"aba\", \"cdc\" and \"xyzx\"."),
            (dict(s="abcab"), None),
        ],
        constraints=["1 <= s.length <= 500", "s consists of lowercase English letters."],
        solution="""
        class Solution:
            def splitIntoSealedParts(self, s: str) -> List[int]:
                last = {ch: i for i, ch in enumerate(s)}
                sizes = []
                start = end = 0
                for i, ch in enumerate(s):
                    end = max(end, last[ch])
                    if i == end:
                        sizes.append(end - start + 1)
                        start = i + 1
                return sizes
        """,
        tests=[
            dict(s="q"),
            dict(s="abcdef"),
            dict(s="aaaaa"),
            dict(s="abba" + "cddc" + "e"),
            dict(s="ababcbacadefegdehijhklij"),
            dict(s="zabcz" + "yy" + "xwvx"),
        ],
    ),
]
