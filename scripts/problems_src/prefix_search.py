"""Prefix sums and binary search: problems 90016-90020."""

PROBLEMS = [
    dict(
        id=90016,
        difficulty="medium",
        signature="def applyRangeAdds(self, n: int, updates: List[List[int]]) -> List[int]:",
        statement="""
        An array of n integers starts with all values 0. Each update [left, right, delta] adds delta to every position from left to right, inclusive.
        Return the array after all updates have been applied.
        """,
        examples=[
            (dict(n=5, updates=[[1, 3, 2], [2, 4, 3], [0, 2, -2]]), None),
            (dict(n=3, updates=[]), None),
        ],
        constraints=["1 <= n <= 10^5", "0 <= updates.length <= 10^4", "0 <= left <= right < n", "-1000 <= delta <= 1000"],
        solution="""
        class Solution:
            def applyRangeAdds(self, n: int, updates: List[List[int]]) -> List[int]:
                diff = [0] * (n + 1)
                for left, right, delta in updates:
                    diff[left] += delta
                    diff[right + 1] -= delta
                return list(accumulate(diff[:n]))
        """,
        tests=[
            dict(n=1, updates=[[0, 0, 7]]),
            dict(n=4, updates=[[0, 3, 1], [0, 3, 1]]),
            dict(n=6, updates=[[5, 5, -4], [0, 0, 4]]),
            dict(n=6, updates=[[0, 5, 10], [1, 4, -10], [2, 3, 10]]),
            dict(n=8, updates=[[i, 7 - i, i + 1] for i in range(4)]),
            dict(n=10, updates=[[(i * 3) % 10, min(9, (i * 3) % 10 + i % 4), i - 5] for i in range(12)]),
        ],
    ),
    dict(
        id=90017,
        difficulty="hard",
        signature="def minHeaviestReader(self, pages: List[int], readers: int) -> int:",
        statement="""
        A book has chapters whose page counts are given by pages, in order. The chapters must be split among readers people: each person reads one contiguous block of chapters, every chapter is read by exactly one person, and every person reads at least one chapter.
        The load of a person is the total number of pages they read. Return the smallest possible value of the largest load.
        """,
        examples=[
            (dict(pages=[7, 2, 5, 10, 8], readers=2), "Split as [7,2,5] and [10,8]: the loads are 14 and 18."),
            (dict(pages=[1, 2, 3, 4, 5], readers=5), None),
        ],
        constraints=["1 <= pages.length <= 1000", "1 <= pages[i] <= 10^6", "1 <= readers <= pages.length"],
        solution="""
        class Solution:
            def minHeaviestReader(self, pages: List[int], readers: int) -> int:
                def people_needed(cap: int) -> int:
                    people, load = 1, 0
                    for p in pages:
                        if load + p > cap:
                            people += 1
                            load = 0
                        load += p
                    return people

                lo, hi = max(pages), sum(pages)
                while lo < hi:
                    mid = (lo + hi) // 2
                    if people_needed(mid) <= readers:
                        hi = mid
                    else:
                        lo = mid + 1
                return lo
        """,
        tests=[
            dict(pages=[9], readers=1),
            dict(pages=[1, 1, 1, 1], readers=1),
            dict(pages=[1, 4, 4], readers=3),
            dict(pages=[10, 5, 13, 4, 8, 4, 5, 11, 14, 9, 16, 10, 20, 8], readers=8),
            dict(pages=[1000000, 1000000, 1], readers=2),
            dict(pages=[(i * 37) % 50 + 1 for i in range(100)], readers=7),
        ],
    ),
    dict(
        id=90018,
        difficulty="hard",
        signature="def kthInProductTable(self, rows: int, cols: int, k: int) -> int:",
        statement="""
        A product table has rows rows and cols columns; the cell in row i and column j (both 1-indexed) holds i * j.
        Return the k-th smallest value among all rows * cols cells (values are counted with multiplicity).
        """,
        examples=[
            (dict(rows=3, cols=3, k=5), "The sorted values are 1, 2, 2, 3, 3, 4, 6, 6, 9; the fifth is 3."),
            (dict(rows=2, cols=3, k=6), None),
        ],
        constraints=["1 <= rows, cols <= 3 * 10^4", "1 <= k <= rows * cols"],
        solution="""
        class Solution:
            def kthInProductTable(self, rows: int, cols: int, k: int) -> int:
                lo, hi = 1, rows * cols
                while lo < hi:
                    mid = (lo + hi) // 2
                    at_most = sum(min(mid // i, cols) for i in range(1, rows + 1))
                    if at_most >= k:
                        hi = mid
                    else:
                        lo = mid + 1
                return lo
        """,
        tests=[
            dict(rows=1, cols=1, k=1),
            dict(rows=1, cols=10, k=7),
            dict(rows=10, cols=1, k=10),
            dict(rows=4, cols=6, k=13),
            dict(rows=45, cols=12, k=471),
            dict(rows=300, cols=300, k=12345),
            dict(rows=3000, cols=2000, k=6000000),
        ],
    ),
    dict(
        id=90019,
        difficulty="medium",
        signature="def foundAfterRotation(self, nums: List[int], target: int) -> bool:",
        statement="""
        An array sorted in non-decreasing order (possibly with repeated values) was rotated at an unknown index: its tail was moved to the front. For example, [1,2,2,5,6] may have become [5,6,1,2,2].
        Given the rotated array nums and an integer target, return true if target occurs in nums and false otherwise. Aim for fewer than nums.length steps on typical inputs.
        """,
        examples=[
            (dict(nums=[5, 6, 1, 2, 2], target=1), None),
            (dict(nums=[3, 3, 4, 3], target=5), None),
        ],
        constraints=["1 <= nums.length <= 5000", "-10^4 <= nums[i], target <= 10^4", "nums is a rotation of a non-decreasing array."],
        solution="""
        class Solution:
            def foundAfterRotation(self, nums: List[int], target: int) -> bool:
                lo, hi = 0, len(nums) - 1
                while lo <= hi:
                    mid = (lo + hi) // 2
                    if nums[mid] == target:
                        return True
                    if nums[lo] == nums[mid] == nums[hi]:
                        lo += 1
                        hi -= 1
                    elif nums[lo] <= nums[mid]:
                        if nums[lo] <= target < nums[mid]:
                            hi = mid - 1
                        else:
                            lo = mid + 1
                    else:
                        if nums[mid] < target <= nums[hi]:
                            lo = mid + 1
                        else:
                            hi = mid - 1
                return False
        """,
        tests=[
            dict(nums=[1], target=1),
            dict(nums=[1], target=0),
            dict(nums=[1, 1, 1, 1, 2, 1, 1], target=2),
            dict(nums=[2, 2, 2, 0, 2, 2], target=0),
            dict(nums=[4, 5, 6, 7, 0, 1, 2], target=3),
            dict(nums=[4, 5, 6, 7, 0, 1, 2], target=6),
            dict(nums=list(range(50, 100)) + list(range(0, 50)), target=49),
            dict(nums=[-3, -1, 8, 9, -9, -5], target=-5),
        ],
    ),
    dict(
        id=90020,
        difficulty="medium",
        signature="def regionSums(self, grid: List[List[int]], queries: List[List[int]]) -> List[int]:",
        statement="""
        You are given an m x n integer matrix grid and a list of queries. Each query [r1, c1, r2, c2] describes the rectangle whose top-left cell is (r1, c1) and whose bottom-right cell is (r2, c2), both inclusive.
        Return an array whose i-th value is the sum of all cells inside the rectangle of the i-th query.
        """,
        examples=[
            (dict(grid=[[1, 2, 3], [4, 5, 6], [7, 8, 9]], queries=[[0, 0, 1, 1], [1, 1, 2, 2], [0, 2, 2, 2]]), "The rectangles sum to 1+2+4+5, 5+6+8+9 and 3+6+9."),
            (dict(grid=[[-1]], queries=[[0, 0, 0, 0]]), None),
        ],
        constraints=["1 <= m, n <= 200", "-10^4 <= grid[i][j] <= 10^4", "1 <= queries.length <= 10^4", "0 <= r1 <= r2 < m, 0 <= c1 <= c2 < n"],
        solution="""
        class Solution:
            def regionSums(self, grid: List[List[int]], queries: List[List[int]]) -> List[int]:
                m, n = len(grid), len(grid[0])
                pre = [[0] * (n + 1) for _ in range(m + 1)]
                for i in range(m):
                    for j in range(n):
                        pre[i + 1][j + 1] = grid[i][j] + pre[i][j + 1] + pre[i + 1][j] - pre[i][j]
                return [
                    pre[r2 + 1][c2 + 1] - pre[r1][c2 + 1] - pre[r2 + 1][c1] + pre[r1][c1]
                    for r1, c1, r2, c2 in queries
                ]
        """,
        tests=[
            dict(grid=[[5, -5]], queries=[[0, 0, 0, 1], [0, 1, 0, 1]]),
            dict(grid=[[1], [2], [3], [4]], queries=[[1, 0, 3, 0], [0, 0, 0, 0], [0, 0, 3, 0]]),
            dict(grid=[[0, 0], [0, 0]], queries=[[0, 0, 1, 1]]),
            dict(grid=[[(i * 5 + j * 3) % 7 - 3 for j in range(6)] for i in range(5)], queries=[[0, 0, 4, 5], [1, 2, 3, 4], [4, 5, 4, 5], [2, 0, 2, 5]]),
            dict(grid=[[i * j for j in range(8)] for i in range(8)], queries=[[3, 3, 7, 7], [0, 0, 7, 0], [2, 5, 6, 6]]),
            dict(grid=[[10000] * 4 for _ in range(3)], queries=[[0, 0, 2, 3], [1, 1, 1, 2]]),
        ],
    ),
]
