"""Stacks and heaps: problems 90021-90025."""

PROBLEMS = [
    dict(
        id=90021,
        difficulty="medium",
        signature="def totalSpread(self, nums: List[int]) -> int:",
        statement="""
        The spread of a non-empty array is its largest element minus its smallest element.
        Given an integer array nums, return the sum of the spreads of all of its non-empty contiguous subarrays.
        """,
        examples=[
            (dict(nums=[1, 3, 2]), "The subarrays [1,3], [3,2] and [1,3,2] have spreads 2, 1 and 2; single elements have spread 0."),
            (dict(nums=[4, 4]), None),
        ],
        constraints=["1 <= nums.length <= 10^5", "-10^9 <= nums[i] <= 10^9"],
        solution="""
        class Solution:
            def totalSpread(self, nums: List[int]) -> int:
                def extreme_sum(better) -> int:
                    # Sum over subarrays of their max (better = ge) or min (better = le).
                    n = len(nums)
                    total = 0
                    stack = []
                    for i in range(n + 1):
                        while stack and (i == n or better(nums[i], nums[stack[-1]])):
                            j = stack.pop()
                            left = stack[-1] if stack else -1
                            total += nums[j] * (j - left) * (i - j)
                        stack.append(i)
                    return total

                return extreme_sum(lambda a, b: a >= b) - extreme_sum(lambda a, b: a <= b)
        """,
        tests=[
            dict(nums=[7]),
            dict(nums=[1, 2, 3, 4]),
            dict(nums=[4, -2, -3, 4, 1]),
            dict(nums=[5, 5, 5, 1, 5]),
            dict(nums=[-1000000000, 1000000000, -1000000000]),
            dict(nums=[(i * 19) % 13 - 6 for i in range(50)]),
        ],
    ),
    dict(
        id=90022,
        difficulty="hard",
        signature="def evaluate(self, expression: str) -> int:",
        statement="""
        You are given a valid arithmetic expression made of non-negative integers, the operators '+', '-' and '*', and parentheses. It contains no spaces and no unary minus.
        Multiplication binds tighter than addition and subtraction, operators of the same precedence are applied from left to right, and parentheses group as usual.
        Return the value of the expression. Do not use eval or similar built-in evaluators.
        """,
        examples=[
            (dict(expression="2+3*4-5"), "3*4 is evaluated first: 2+12-5 = 9."),
            (dict(expression="(2+3)*(4-5)"), None),
        ],
        constraints=[
            "1 <= expression.length <= 1000",
            "Every number has at most 4 digits.",
            "Every intermediate result fits in a 64-bit signed integer.",
        ],
        solution="""
        class Solution:
            def evaluate(self, expression: str) -> int:
                pos = 0

                def number_or_group() -> int:
                    nonlocal pos
                    if expression[pos] == "(":
                        pos += 1
                        value = sum_expr()
                        pos += 1  # skip ")"
                        return value
                    start = pos
                    while pos < len(expression) and expression[pos].isdigit():
                        pos += 1
                    return int(expression[start:pos])

                def product() -> int:
                    nonlocal pos
                    value = number_or_group()
                    while pos < len(expression) and expression[pos] == "*":
                        pos += 1
                        value *= number_or_group()
                    return value

                def sum_expr() -> int:
                    nonlocal pos
                    value = product()
                    while pos < len(expression) and expression[pos] in "+-":
                        op = expression[pos]
                        pos += 1
                        rhs = product()
                        value = value + rhs if op == "+" else value - rhs
                    return value

                return sum_expr()
        """,
        tests=[
            dict(expression="0"),
            dict(expression="42"),
            dict(expression="10-2-3"),
            dict(expression="2*3*4-5*6"),
            dict(expression="((7))"),
            dict(expression="1-(2-(3-(4-5)))"),
            dict(expression="100*(3+4*(2-7))-(8*9)"),
            dict(expression="(1+2)*(3+4)*(5+6)-7*(8-9*10)"),
        ],
    ),
    dict(
        id=90023,
        difficulty="medium",
        signature="def largestAfterRemovals(self, num: str, k: int) -> str:",
        statement="""
        You are given a string num of decimal digits (without leading zeros, unless num is "0") and an integer k.
        Remove exactly k digits from num, keeping the order of the remaining digits, so that the remaining digits form the largest possible number. Return that number as a string.
        """,
        examples=[
            (dict(num="1924", k=2), "Keeping 9 and 4 gives 94."),
            (dict(num="4321", k=1), None),
        ],
        constraints=["1 <= k < num.length <= 10^5", "num consists of digits and has no leading zeros unless it is \"0\"."],
        solution="""
        class Solution:
            def largestAfterRemovals(self, num: str, k: int) -> str:
                stack = []
                left = k
                for d in num:
                    while left and stack and stack[-1] < d:
                        stack.pop()
                        left -= 1
                    stack.append(d)
                return "".join(stack[: len(num) - k])
        """,
        tests=[
            dict(num="10", k=1),
            dict(num="99", k=1),
            dict(num="1000", k=1),
            dict(num="1234567", k=3),
            dict(num="7654321", k=3),
            dict(num="3141592653", k=4),
            dict(num="1010101", k=3),
        ],
    ),
    dict(
        id=90024,
        difficulty="hard",
        signature="def maxFinalCapital(self, k: int, capital: int, costs: List[int], gains: List[int]) -> int:",
        statement="""
        You start with capital units of money and may complete at most k projects, one after another. Project i can be started only if your current money is at least costs[i]; starting it does not spend any money, and finishing it adds gains[i] to your money. Each project can be completed at most once.
        Return the largest amount of money you can have after completing at most k projects.
        """,
        examples=[
            (dict(k=2, capital=0, costs=[0, 1, 1], gains=[1, 2, 3]), "Do project 0 (money 1), then project 2 (money 4)."),
            (dict(k=3, capital=0, costs=[1, 2], gains=[5, 5]), "No project is affordable."),
        ],
        constraints=["1 <= k <= 10^5", "0 <= capital <= 10^9", "1 <= costs.length == gains.length <= 10^5", "0 <= costs[i], gains[i] <= 10^4"],
        solution="""
        class Solution:
            def maxFinalCapital(self, k: int, capital: int, costs: List[int], gains: List[int]) -> int:
                projects = sorted(zip(costs, gains))
                ready = []
                i = 0
                for _ in range(k):
                    while i < len(projects) and projects[i][0] <= capital:
                        heappush(ready, -projects[i][1])
                        i += 1
                    if not ready:
                        break
                    capital -= heappop(ready)
                return capital
        """,
        tests=[
            dict(k=1, capital=5, costs=[5], gains=[0]),
            dict(k=1, capital=0, costs=[0, 0], gains=[3, 7]),
            dict(k=5, capital=0, costs=[0, 0], gains=[3, 7]),
            dict(k=3, capital=1, costs=[1, 2, 4, 8, 16], gains=[1, 2, 4, 8, 16]),
            dict(k=10, capital=1, costs=[1, 2, 4, 8, 16], gains=[1, 2, 4, 8, 16]),
            dict(k=4, capital=2, costs=[0, 3, 3, 5, 9, 10], gains=[1, 4, 2, 6, 9, 100]),
            dict(k=6, capital=0, costs=[(i * 7) % 12 for i in range(20)], gains=[(i * 5) % 9 for i in range(20)]),
        ],
    ),
    dict(
        id=90025,
        difficulty="medium",
        signature="def minSumAfterHalving(self, piles: List[int], ops: int) -> int:",
        statement="""
        You are given an array of positive integers piles and an integer ops. One operation picks any pile with x stones and replaces it with ceil(x / 2) stones (so a pile of 1 stays at 1). The same pile may be picked more than once.
        Return the smallest possible total number of stones after exactly ops operations.
        """,
        examples=[
            (dict(piles=[5, 4, 9], ops=2), "Halve 9 to 5, then one of the 5s to 3: the total becomes 3 + 4 + 5 = 12."),
            (dict(piles=[1, 1], ops=3), None),
        ],
        constraints=["1 <= piles.length <= 10^5", "1 <= piles[i] <= 10^4", "1 <= ops <= 10^5"],
        solution="""
        class Solution:
            def minSumAfterHalving(self, piles: List[int], ops: int) -> int:
                heap = [-p for p in piles]
                heapify(heap)
                for _ in range(ops):
                    x = -heap[0]
                    if x == 1:
                        break
                    heapreplace(heap, -((x + 1) // 2))
                return -sum(heap)
        """,
        tests=[
            dict(piles=[10], ops=1),
            dict(piles=[10], ops=10),
            dict(piles=[4, 3, 6, 7], ops=3),
            dict(piles=[10000, 1, 1], ops=5),
            dict(piles=[2, 2, 2, 2], ops=2),
            dict(piles=[(i * 97) % 1000 + 1 for i in range(40)], ops=30),
        ],
    ),
]
