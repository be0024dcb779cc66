"""Matrices and bit manipulation: problems 90050-90055."""

PROBLEMS = [
    dict(
        id=90050,
        difficulty="medium",
        signature="def counterSpiral(self, matrix: List[List[int]]) -> List[int]:",
        statement="""
        Given an m x n matrix, list all of its elements in counter-clockwise spiral order: start at the top-left cell, go down the first column, then right along the bottom row, then up the last column, then left along the top row, and continue inwards in the same way.
        Return the list of elements in that order.
        """,
        examples=[
            (dict(matrix=[[1, 2, 3], [4, 5, 6], [7, 8, 9]]), None),
            (dict(matrix=[[1, 2, 3, 4], [5, 6, 7, 8]]), None),
        ],
        constraints=["1 <= m, n <= 50", "-100 <= matrix[i][j] <= 100"],
        solution="""
        class Solution:
            def counterSpiral(self, matrix: List[List[int]]) -> List[int]:
                top, bottom = 0, len(matrix) - 1
                left, right = 0, len(matrix[0]) - 1
                out = []
                while top <= bottom and left <= right:
                    out.extend(matrix[r][left] for r in range(top, bottom + 1))
                    out.extend(matrix[bottom][c] for c in range(left + 1, right + 1))
                    if left < right:
                        out.extend(matrix[r][right] for r in range(bottom - 1, top - 1, -1))
                    if top < bottom:
                        out.extend(matrix[top][c] for c in range(right - 1, left, -1))
                    top, bottom, left, right = top + 1, bottom - 1, left + 1, right - 1
                return out
        """,
        tests=[
            dict(matrix=[[7]]),
            dict(matrix=[[1, 2, 3]]),
            dict(matrix=[[1], [2], [3]]),
            dict(matrix=[[1, 2], [3, 4]]),
            dict(matrix=[[1, 2], [3, 4], [5, 6], [7, 8]]),
            dict(matrix=[[r * 5 + c for c in range(5)] for r in range(5)]),
            dict(matrix=[[r * 6 + c for c in range(6)] for r in range(3)]),
        ],
    ),
    dict(
        id=90051,
        difficulty="medium",
        signature="def sortDiagonalsDescending(self, grid: List[List[int]]) -> List[List[int]]:",
        statement="""
        A diagonal of an m x n matrix is a maximal run of cells (i, j), (i + 1, j + 1), (i + 2, j + 2), ... going from upper-left to lower-right.
        Sort the values of every diagonal in non-increasing order, so that the largest value of each diagonal ends up in its upper-left-most cell, and return the resulting matrix.
        """,
        examples=[
            (dict(grid=[[1, 2, 3], [4, 5, 6], [7, 8, 9]]), "The main diagonal 1, 5, 9 becomes 9, 5, 1; the diagonal 2, 6 becomes 6, 2; and so on."),
            (dict(grid=[[3, 1], [2, 4], [5, 6]]), None),
        ],
        constraints=["1 <= m, n <= 100", "1 <= grid[i][j] <= 100"],
        solution="""
        class Solution:
            def sortDiagonalsDescending(self, grid: List[List[int]]) -> List[List[int]]:
                m, n = len(grid), len(grid[0])
                diagonals = defaultdict(list)
                for i in range(m):
                    for j in range(n):
                        diagonals[i - j].append(grid[i][j])
                for values in diagonals.values():
                    values.sort()  # pop() from the end yields the largest first
                result = [[0] * n for _ in range(m)]
                for i in range(m):
                    for j in range(n):
                        result[i][j] = diagonals[i - j].pop()
                return result
        """,
        tests=[
            dict(grid=[[5]]),
            dict(grid=[[1, 2, 3, 4]]),
            dict(grid=[[4], [3], [2]]),
            dict(grid=[[1, 1], [1, 1]]),
            dict(grid=[[11, 25, 66, 1, 69, 7], [23, 55, 17, 45, 15, 52], [75, 31, 36, 44, 58, 8], [22, 27, 33, 25, 68, 4], [84, 28, 14, 11, 5, 50]]),
            dict(grid=[[(i * 7 + j * 13) % 10 + 1 for j in range(4)] for i in range(6)]),
        ],
    ),
    dict(
        id=90052,
        difficulty="medium",
        signature="def nextGenerationOnTorus(self, board: List[List[int]]) -> List[List[int]]:",
        statement="""
        A colony lives on an m x n board of cells, 1 for alive and 0 for dead. The board wraps around: the row above row 0 is row m - 1, the column left of column 0 is column n - 1, and so on. Each cell has eight neighbours (horizontal, vertical and diagonal), taken with wrap-around; on small boards the same cell may be counted as a neighbour more than once, once for each of the eight directions.
        All cells update at the same time: a live cell with 2 or 3 live neighbours stays alive, a dead cell with exactly 3 live neighbours becomes alive, and every other cell is dead in the next generation.
        Return the board after one generation.
        """,
        examples=[
            (dict(board=[[0, 0, 0, 0], [0, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]]), "A horizontal bar of three turns vertical."),
            (dict(board=[[1, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 1]]), "The four corners touch each other across the edges, forming a stable 2 x 2 block."),
        ],
        constraints=["1 <= m, n <= 50", "board[i][j] is 0 or 1."],
        solution="""
        class Solution:
            def nextGenerationOnTorus(self, board: List[List[int]]) -> List[List[int]]:
                m, n = len(board), len(board[0])
                nxt = [[0] * n for _ in range(m)]
                for i in range(m):
                    for j in range(n):
                        live = sum(
                            board[(i + di) % m][(j + dj) % n]
                            for di in (-1, 0, 1)
                            for dj in (-1, 0, 1)
                            if di or dj
                        )
                        if live == 3 or (live == 2 and board[i][j] == 1):
                            nxt[i][j] = 1
                return nxt
        """,
        tests=[
            dict(board=[[1]]),
            dict(board=[[0]]),
            dict(board=[[1, 1], [1, 0]]),
            dict(board=[[0, 1, 0], [0, 1, 0], [0, 1, 0]]),
            dict(board=[[0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]),
            dict(board=[[1, 0, 1, 1, 0, 1], [0, 1, 1, 0, 0, 0], [1, 1, 0, 0, 1, 1], [0, 0, 1, 0, 1, 0]]),
        ],
    ),
    dict(
        id=90053,
        difficulty="medium",
        signature="def totalSetBits(self, n: int) -> int:",
        statement="""
        Return the total number of 1 bits in the binary representations of all integers from 1 to n, inclusive.
        Your solution should run in time polynomial in the number of bits of n.
        """,
        examples=[
            (dict(n=5), "1, 10, 11, 100 and 101 contain 1 + 1 + 2 + 1 + 2 = 7 ones."),
            (dict(n=8), None),
        ],
        constraints=["0 <= n <= 10^15"],
        solution="""
        class Solution:
            def totalSetBits(self, n: int) -> int:
                total = 0
                bit = 0
                while (1 << bit) <= n:
                    cycle = 1 << (bit + 1)
                    full = (n + 1) // cycle
                    total += full * (cycle // 2)
                    total += max(0, (n + 1) % cycle - cycle // 2)
                    bit += 1
                return total
        """,
        tests=[
            dict(n=0),
            dict(n=1),
            dict(n=2),
            dict(n=7),
            dict(n=100),
            dict(n=1023),
            dict(n=1000000000000000),
        ],
    ),
    dict(
        id=90054,
        difficulty="medium",
        signature="def loneValue(self, nums: List[int]) -> int:",
        statement="""
        In the integer array nums every value appears exactly three times, except for one value, which appears exactly once.
        Return the value that appears once. Use constant extra space.
        """,
        examples=[
            (dict(nums=[4, 9, 4, 4]), None),
            (dict(nums=[0, -3, 0, 7, 0, 7, 7]), None),
        ],
        constraints=["1 <= nums.length <= 3 * 10^4", "-2^31 <= nums[i] <= 2^31 - 1"],
        solution="""
        class Solution:
            def loneValue(self, nums: List[int]) -> int:
                ones = twos = 0
                for x in nums:
                    ones = (ones ^ x) & ~twos
                    twos = (twos ^ x) & ~ones
                return ones
        """,
        tests=[
            dict(nums=[5]),
            dict(nums=[-1]),
            dict(nums=[2, 2, 3, 2]),
            dict(nums=[-2, -2, 1, 1, -3, 1, -2]),
            dict(nums=[2147483647, -2147483648, -2147483648, -2147483648]),
            dict(nums=[10, 20, 10, 30, 20, 10, 20]),
        ],
    ),
    dict(
        id=90055,
        difficulty="medium",
        signature="def flipsForAnd(self, a: int, b: int, c: int) -> int:",
        statement="""
        You are given three non-negative integers a, b and c. A flip changes one bit of a or of b from 0 to 1 or from 1 to 0.
        Return the minimum number of flips needed so that a AND b (bitwise) equals c.
        """,
        examples=[
            (dict(a=2, b=6, c=5), "a = 010, b = 110, c = 101: bit 0 needs both a and b set (2 flips), bit 1 must be cleared in one of them (1 flip), bit 2 needs a set (1 flip)."),
            (dict(a=7, b=7, c=7), None),
        ],
        constraints=["0 <= a, b, c <= 10^9"],
        solution="""
        class Solution:
            def flipsForAnd(self, a: int, b: int, c: int) -> int:
                flips = 0
                while a or b or c:
                    x, y, z = a & 1, b & 1, c & 1
                    if z:
                        flips += (1 - x) + (1 - y)
                    elif x and y:
                        flips += 1
                    a, b, c = a >> 1, b >> 1, c >> 1
                return flips
        """,
        tests=[
            dict(a=0, b=0, c=0),
            dict(a=0, b=0, c=1),
            dict(a=1, b=1, c=0),
            dict(a=12, b=10, c=8),
            dict(a=1000000000, b=999999999, c=123456789),
            dict(a=255, b=0, c=255),
        ],
    ),
]
