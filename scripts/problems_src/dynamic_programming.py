"""Dynamic programming: problems 90031-90037."""

PROBLEMS = [
    dict(
        id=90031,
        difficulty="hard",
        signature="def countReadings(self, digits: str, limit: int) -> int:",
        statement="""
        A printer wrote a list of integers, each between 1 and limit inclusive and written without leading zeros, but forgot the separators, producing the digit string digits.
        Return the number of lists that could have produced digits. As the answer can be large, return it modulo 10^9 + 7.
        """,
        examples=[
            (dict(digits="1317", limit=20), "The lists are [1,3,1,7], [13,1,7], [1,3,17] and [13,17]."),
            (dict(digits="1000", limit=10), "A 0 can never start a number, and 100 and 1000 exceed the limit."),
        ],
        constraints=["1 <= digits.length <= 10^5", "digits consists of decimal digits.", "1 <= limit <= 10^9"],
        solution="""
        class Solution:
            def countReadings(self, digits: str, limit: int) -> int:
                mod = 10**9 + 7
                n = len(digits)
                width = len(str(limit))
                ways = [0] * (n + 1)
                ways[n] = 1
                for i in range(n - 1, -1, -1):
                    if digits[i] == "0":
                        continue
                    total = 0
                    for j in range(i + 1, min(n, i + width) + 1):
                        if int(digits[i:j]) > limit:
                            break
                        total += ways[j]
                    ways[i] = total % mod
                return ways[0]
        """,
        tests=[
            dict(digits="0", limit=5),
            dict(digits="7", limit=7),
            dict(digits="7", limit=6),
            dict(digits="1111", limit=11),
            dict(digits="2020", limit=30),
            dict(digits="123456789", limit=1000),
            dict(digits="1" * 60, limit=1000000000),
        ],
    ),
    dict(
        id=90032,
        difficulty="hard",
        signature="def bestBookings(self, bookings: List[List[int]]) -> int:",
        statement="""
        A studio receives booking requests bookings[i] = [start, end, fee]: the request occupies the studio from time start up to, but not including, time end, and pays fee if accepted. Accepted requests may not overlap, but one may start exactly when another ends.
        Return the maximum total fee of a set of accepted requests.
        """,
        examples=[
            (dict(bookings=[[1, 3, 50], [2, 4, 10], [3, 5, 40], [3, 6, 70]]), "Accept [1,3] and [3,6] for 50 + 70."),
            (dict(bookings=[[1, 2, 5], [1, 3, 6], [1, 4, 4]]), None),
        ],
        constraints=["1 <= bookings.length <= 5 * 10^4", "0 <= start < end <= 10^9", "1 <= fee <= 10^4"],
        solution="""
        class Solution:
            def bestBookings(self, bookings: List[List[int]]) -> int:
                jobs = sorted(bookings, key=lambda b: b[1])
                ends = [0]
                best = [0]
                for start, end, fee in jobs:
                    k = bisect_right(ends, start) - 1
                    value = max(best[-1], best[k] + fee)
                    ends.append(end)
                    best.append(value)
                return best[-1]
        """,
        tests=[
            dict(bookings=[[0, 1, 9]]),
            dict(bookings=[[0, 10, 5], [0, 5, 3], [5, 10, 3]]),
            dict(bookings=[[1, 2, 1], [2, 3, 1], [3, 4, 1], [1, 4, 2]]),
            dict(bookings=[[4, 5, 2], [0, 3, 3], [2, 6, 10], [6, 9, 1], [5, 8, 4]]),
            dict(bookings=[[1, 1000000000, 10000], [0, 1, 1]]),
            dict(bookings=[[i % 13, i % 13 + i % 5 + 1, (i * 7) % 11 + 1] for i in range(40)]),
        ],
    ),
    dict(
        id=90033,
        difficulty="medium",
        signature="def weightedEditDistance(self, source: str, target: str, insertCost: int, deleteCost: int, replaceCost: int) -> int:",
        statement="""
        You may transform the string source with three operations: insert one character (costs insertCost), delete one character (costs deleteCost), or replace one character by another (costs replaceCost).
        Return the minimum total cost to turn source into target.
        """,
        examples=[
            (dict(source="kitten", target="sitting", insertCost=1, deleteCost=1, replaceCost=1), None),
            (dict(source="ab", target="ba", insertCost=1, deleteCost=1, replaceCost=5), "Delete a and insert a at the end: cost 2, cheaper than two replacements."),
        ],
        constraints=["0 <= source.length, target.length <= 500", "Both strings consist of lowercase English letters.", "1 <= insertCost, deleteCost, replaceCost <= 100"],
        solution="""
        class Solution:
            def weightedEditDistance(self, source: str, target: str, insertCost: int, deleteCost: int, replaceCost: int) -> int:
                m, n = len(source), len(target)
                prev = [j * insertCost for j in range(n + 1)]
                for i in range(1, m + 1):
                    cur = [i * deleteCost] + [0] * n
                    for j in range(1, n + 1):
                        if source[i - 1] == target[j - 1]:
                            cur[j] = prev[j - 1]
                        else:
                            cur[j] = min(prev[j - 1] + replaceCost, prev[j] + deleteCost, cur[j - 1] + insertCost)
                    prev = cur
                return prev[n]
        """,
        tests=[
            dict(source="", target="", insertCost=3, deleteCost=4, replaceCost=5),
            dict(source="", target="abc", insertCost=3, deleteCost=4, replaceCost=5),
            dict(source="abc", target="", insertCost=3, deleteCost=4, replaceCost=5),
            dict(source="same", target="same", insertCost=1, deleteCost=1, replaceCost=1),
            dict(source="horse", target="ros", insertCost=2, deleteCost=3, replaceCost=4),
            dict(source="intention", target="execution", insertCost=1, deleteCost=1, replaceCost=2),
            dict(source="abcdefgh", target="hgfedcba", insertCost=7, deleteCost=1, replaceCost=3),
        ],
    ),
    dict(
        id=90034,
        difficulty="medium",
        signature="def fewestItemsForExactWeight(self, weights: List[int], target: int) -> int:",
        statement="""
        You have a collection of items with the given positive weights; each item can be used at most once.
        Return the minimum number of items whose weights sum to exactly target, or -1 if no selection of items does.
        """,
        examples=[
            (dict(weights=[5, 3, 4, 2, 6], target=9), "5 + 4 and 3 + 6 both use two items."),
            (dict(weights=[4, 6], target=5), None),
        ],
        constraints=["1 <= weights.length <= 200", "1 <= weights[i] <= 1000", "1 <= target <= 10^4"],
        solution="""
        class Solution:
            def fewestItemsForExactWeight(self, weights: List[int], target: int) -> int:
                big = len(weights) + 1
                best = [0] + [big] * target
                for w in weights:
                    for total in range(target, w - 1, -1):
                        if best[total - w] + 1 < best[total]:
                            best[total] = best[total - w] + 1
                return best[target] if best[target] < big else -1
        """,
        tests=[
            dict(weights=[7], target=7),
            dict(weights=[1, 1, 1], target=3),
            dict(weights=[1, 1, 1], target=4),
            dict(weights=[2, 2, 2, 10], target=6),
            dict(weights=[9, 8, 1, 1, 1, 1], target=10),
            dict(weights=[(i * 37) % 97 + 1 for i in range(60)], target=500),
        ],
    ),
    dict(
        id=90035,
        difficulty="medium",
        signature="def cheapestDescent(self, grid: List[List[int]]) -> int:",
        statement="""
        You are given an m x n grid where grid[i][j] >= 0 is the toll for entering cell (i, j) and -1 marks a blocked cell. Starting on the top-left cell (paying its toll), you move only right or down and must end on the bottom-right cell.
        Return the minimum total toll of such a path, or -1 if every path hits a blocked cell (including when the start or end is blocked).
        """,
        examples=[
            (dict(grid=[[1, 3, 1], [1, 5, 1], [4, 2, 1]]), "The path 1 -> 3 -> 1 -> 1 -> 1 costs 7."),
            (dict(grid=[[0, -1], [-1, 0]]), None),
        ],
        constraints=["1 <= m, n <= 200", "-1 <= grid[i][j] <= 100"],
        solution="""
        class Solution:
            def cheapestDescent(self, grid: List[List[int]]) -> int:
                m, n = len(grid), len(grid[0])
                cost = [[inf] * n for _ in range(m)]
                for i in range(m):
                    for j in range(n):
                        if grid[i][j] == -1:
                            continue
                        if i == 0 and j == 0:
                            cost[i][j] = grid[i][j]
                            continue
                        up = cost[i - 1][j] if i else inf
                        left = cost[i][j - 1] if j else inf
                        cost[i][j] = min(up, left) + grid[i][j]
                return -1 if cost[-1][-1] == inf else cost[-1][-1]
        """,
        tests=[
            dict(grid=[[5]]),
            dict(grid=[[-1]]),
            dict(grid=[[1, 2, 3, 4]]),
            dict(grid=[[1], [0], [7]]),
            dict(grid=[[1, -1, 1], [1, -1, 1], [1, 1, 1]]),
            dict(grid=[[0, 0, 0], [-1, -1, 0], [0, 0, -1]]),
            dict(grid=[[(i * 7 + j * 3) % 10 for j in range(8)] for i in range(6)]),
        ],
    ),
    dict(
        id=90036,
        difficulty="medium",
        signature="def maxPickNoThreeInRow(self, values: List[int]) -> int:",
        statement="""
        You are given an integer array values (entries may be negative). Choose any subset of positions such that no three consecutive positions are all chosen.
        Return the maximum possible sum of the chosen values. Choosing nothing is allowed and gives 0.
        """,
        examples=[
            (dict(values=[3, 3, 3, 3]), "Choose positions 0, 1 and 3."),
            (dict(values=[-1, -2]), None),
        ],
        constraints=["1 <= values.length <= 10^5", "-10^4 <= values[i] <= 10^4"],
        solution="""
        class Solution:
            def maxPickNoThreeInRow(self, values: List[int]) -> int:
                # free: best sum with the last position not chosen;
                # one / two: best with a run of exactly one / two chosen positions at the end.
                free, one, two = 0, -inf, -inf
                for v in values:
                    free, one, two = max(free, one, two), free + v, one + v
                return max(free, one, two)
        """,
        tests=[
            dict(values=[5]),
            dict(values=[-5]),
            dict(values=[1, 2, 3]),
            dict(values=[10, 1, 10, 10, 1, 10]),
            dict(values=[4, -1, 4, 4, 4, -10, 4]),
            dict(values=[(i * 13) % 21 - 6 for i in range(50)]),
        ],
    ),
    dict(
        id=90037,
        difficulty="hard",
        signature="def minInsertionsForMirror(self, s: str) -> int:",
        statement="""
        In one step you may insert any single character at any position of the string s.
        Return the minimum number of steps needed to make s read the same from left to right and from right to left.
        """,
        examples=[
            (dict(s="abcb"), "Insert a at the end: \"abcba\"."),
            (dict(s="race"), "\"ecarace\" needs three insertions."),
        ],
        constraints=["1 <= s.length <= 500", "s consists of lowercase English letters."],
        solution="""
        class Solution:
            def minInsertionsForMirror(self, s: str) -> int:
                n = len(s)
                need = [[0] * n for _ in range(n)]
                for length in range(2, n + 1):
                    for i in range(n - length + 1):
                        j = i + length - 1
                        if s[i] == s[j]:
                            need[i][j] = need[i + 1][j - 1] if length > 2 else 0
                        else:
                            need[i][j] = 1 + min(need[i + 1][j], need[i][j - 1])
                return need[0][n - 1]
        """,
        tests=[
            dict(s="a"),
            dict(s="aa"),
            dict(s="ab"),
            dict(s="madam"),
            dict(s="leetcode"),
            dict(s="abcdeedcbaf"),
            dict(s="xyz" * 15),
        ],
    ),
]
