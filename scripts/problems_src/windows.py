"""Two pointers and sliding windows: problems 90011-90015."""

PROBLEMS = [
    dict(
        id=90011,
        difficulty="medium",
        signature="def longestFewKinds(self, items: List[int], k: int) -> int:",
        statement="""
        A conveyor belt carries items in the order given by the integer array items, where items[i] is the kind of the i-th item. You may pick up one contiguous stretch of the belt, but your bag can hold items of at most k different kinds.
        Return the maximum number of items in a contiguous stretch that contains at most k distinct kinds.
        """,
        examples=[
            (dict(items=[1, 2, 1, 3, 3, 3, 2], k=2), "The stretch [1,3,3,3] has length 4 and two kinds."),
            (dict(items=[4, 4, 4], k=1), None),
        ],
        constraints=["1 <= items.length <= 10^5", "0 <= items[i] <= 10^9", "1 <= k <= items.length"],
        solution="""
        class Solution:
            def longestFewKinds(self, items: List[int], k: int) -> int:
                count = Counter()
                left = 0
                best = 0
                for right, x in enumerate(items):
                    count[x] += 1
                    while len(count) > k:
                        count[items[left]] -= 1
                        if count[items[left]] == 0:
                            del count[items[left]]
                        left += 1
                    best = max(best, right - left + 1)
                return best
        """,
        tests=[
            dict(items=[9], k=1),
            dict(items=[1, 2, 3, 4, 5], k=1),
            dict(items=[1, 2, 3, 4, 5], k=5),
            dict(items=[1, 2, 1, 2, 3, 2, 3, 2, 3, 3, 1], k=2),
            dict(items=[5, 5, 6, 7, 6, 5, 7, 7, 8], k=3),
            dict(items=[(i * i) % 7 for i in range(60)], k=2),
        ],
    ),
    dict(
        id=90012,
        difficulty="medium",
        signature="def countSubarraysWithinBudget(self, costs: List[int], budget: int) -> int:",
        statement="""
        You are given an array of positive integers costs and an integer budget.
        Return the number of non-empty contiguous subarrays whose total cost is at most budget.
        """,
        examples=[
            (dict(costs=[2, 1, 3], budget=3), "The subarrays [2], [1], [3] and [2,1] fit in the budget."),
            (dict(costs=[5, 5], budget=4), None),
        ],
        constraints=["1 <= costs.length <= 10^5", "1 <= costs[i] <= 10^4", "0 <= budget <= 10^9"],
        solution="""
        class Solution:
            def countSubarraysWithinBudget(self, costs: List[int], budget: int) -> int:
                left = 0
                window = 0
                total = 0
                for right, c in enumerate(costs):
                    window += c
                    while window > budget:
                        window -= costs[left]
                        left += 1
                    total += right - left + 1
                return total
        """,
        tests=[
            dict(costs=[1], budget=0),
            dict(costs=[1], budget=1),
            dict(costs=[1, 1, 1, 1], budget=10),
            dict(costs=[3, 1, 4, 1, 5, 9, 2, 6], budget=7),
            dict(costs=[10, 1, 1, 10, 1, 1, 1], budget=3),
            dict(costs=[(i * 13) % 10 + 1 for i in range(80)], budget=25),
        ],
    ),
    dict(
        id=90013,
        difficulty="medium",
        signature="def longestCalmStretch(self, readings: List[int], spread: int) -> int:",
        statement="""
        A sensor produced the integer array readings. A contiguous stretch of readings is calm when the difference between its largest and smallest reading is at most spread.
        Return the length of the longest calm stretch.
        """,
        examples=[
            (dict(readings=[8, 2, 4, 7], spread=4), "[2,4] is calm; no stretch of length 3 is."),
            (dict(readings=[10, 1, 2, 4, 7, 2], spread=5), "[2,4,7,2] is calm: its largest reading is 7 and its smallest is 2."),
        ],
        constraints=["1 <= readings.length <= 10^5", "-10^9 <= readings[i] <= 10^9", "0 <= spread <= 2 * 10^9"],
        solution="""
        class Solution:
            def longestCalmStretch(self, readings: List[int], spread: int) -> int:
                highs, lows = deque(), deque()
                left = 0
                best = 0
                for right, x in enumerate(readings):
                    while highs and readings[highs[-1]] <= x:
                        highs.pop()
                    highs.append(right)
                    while lows and readings[lows[-1]] >= x:
                        lows.pop()
                    lows.append(right)
                    while readings[highs[0]] - readings[lows[0]] > spread:
                        left += 1
                        if highs[0] < left:
                            highs.popleft()
                        if lows[0] < left:
                            lows.popleft()
                    best = max(best, right - left + 1)
                return best
        """,
        tests=[
            dict(readings=[5], spread=0),
            dict(readings=[3, 3, 3, 3], spread=0),
            dict(readings=[1, 2, 3, 4, 5], spread=0),
            dict(readings=[4, 2, 2, 2, 4, 4, 2, 2], spread=0),
            dict(readings=[-5, 5, -5, 5], spread=10),
            dict(readings=[1, 5, 6, 7, 8, 10, 6, 5, 6], spread=4),
            dict(readings=[(i * 17) % 23 for i in range(70)], spread=6),
        ],
    ),
    dict(
        id=90014,
        difficulty="medium",
        signature="def countPairsInRange(self, nums: List[int], lower: int, upper: int) -> int:",
        statement="""
        You are given an integer array nums and two integers lower <= upper.
        Return the number of index pairs (i, j) with i < j such that lower <= nums[i] + nums[j] <= upper.
        """,
        examples=[
            (dict(nums=[0, 1, 7, 4, 4, 5], lower=3, upper=6), "The pairs are (0,3), (0,4), (0,5), (1,3), (1,4) and (1,5)."),
            (dict(nums=[1, 7, 9, 2, 5], lower=11, upper=11), None),
        ],
        constraints=["1 <= nums.length <= 10^5", "-10^9 <= nums[i] <= 10^9", "-10^9 <= lower <= upper <= 10^9"],
        solution="""
        class Solution:
            def countPairsInRange(self, nums: List[int], lower: int, upper: int) -> int:
                vals = sorted(nums)

                def pairs_at_most(limit: int) -> int:
                    i, j = 0, len(vals) - 1
                    count = 0
                    while i < j:
                        if vals[i] + vals[j] <= limit:
                            count += j - i
                            i += 1
                        else:
                            j -= 1
                    return count

                return pairs_at_most(upper) - pairs_at_most(lower - 1)
        """,
        tests=[
            dict(nums=[3], lower=0, upper=10),
            dict(nums=[1, 1], lower=2, upper=2),
            dict(nums=[1, 1], lower=3, upper=5),
            dict(nums=[-3, -1, 0, 2, 4], lower=-2, upper=1),
            dict(nums=[5, 5, 5, 5, 5], lower=10, upper=10),
            dict(nums=[(i * 29) % 41 - 20 for i in range(60)], lower=-5, upper=7),
        ],
    ),
    dict(
        id=90015,
        difficulty="medium",
        signature="def countTripletsBelow(self, nums: List[int], target: int) -> int:",
        statement="""
        Given an integer array nums and an integer target, return the number of index triplets (i, j, k) with i < j < k such that nums[i] + nums[j] + nums[k] < target.
        """,
        examples=[
            (dict(nums=[-2, 0, 1, 3], target=2), "The triplets with sum below 2 use values (-2,0,1) and (-2,0,3)."),
            (dict(nums=[1, 1, 1], target=3), None),
        ],
        constraints=["3 <= nums.length <= 3000", "-100 <= nums[i] <= 100", "-300 <= target <= 300"],
        solution="""
        class Solution:
            def countTripletsBelow(self, nums: List[int], target: int) -> int:
                vals = sorted(nums)
                n = len(vals)
                count = 0
                for a in range(n - 2):
                    lo, hi = a + 1, n - 1
                    while lo < hi:
                        if vals[a] + vals[lo] + vals[hi] < target:
                            count += hi - lo
                            lo += 1
                        else:
                            hi -= 1
                return count
        """,
        tests=[
            dict(nums=[1, 1, 1], target=4),
            dict(nums=[0, 0, 0, 0], target=1),
            dict(nums=[5, -5, 3, -3, 1], target=0),
            dict(nums=[100, 100, 100, -100], target=100),
            dict(nums=[3, 1, 0, -2, 4, 2], target=4),
            dict(nums=[(i * 11) % 21 - 10 for i in range(40)], target=-3),
        ],
    ),
]
