"""Arrays and hashing: problems 90001-90005."""

PROBLEMS = [
    dict(
        id=90001,
        difficulty="medium",
        signature="def longestBalancedSegment(self, nums: List[int], pivot: int) -> int:",
        statement="""
        You are given an integer array nums and an integer pivot.
        A contiguous subarray is called balanced if the number of its elements that are strictly greater than pivot equals the number of its elements that are strictly smaller than pivot. Elements equal to pivot do not count on either side.
        Return the length of the longest balanced subarray. A subarray made only of elements equal to pivot is balanced; if no non-empty subarray is balanced, return 0.
        """,
        examples=[
            (dict(nums=[5, 1, 2, 7, 9], pivot=4), "The subarray [5,1,2,7] has two elements above 4 and two below 4."),
            (dict(nums=[8, 9, 10], pivot=3), "Every element is above the pivot, so no non-empty subarray is balanced."),
        ],
        constraints=["1 <= nums.length <= 10^5", "-10^9 <= nums[i], pivot <= 10^9"],
        solution="""
        class Solution:
            def longestBalancedSegment(self, nums: List[int], pivot: int) -> int:
                first = {0: -1}
                balance = 0
                best = 0
                for i, x in enumerate(nums):
                    if x > pivot:
                        balance += 1
                    elif x < pivot:
                        balance -= 1
                    if balance in first:
                        best = max(best, i - first[balance])
                    else:
                        first[balance] = i
                return best
        """,
        tests=[
            dict(nums=[4], pivot=4),
            dict(nums=[1], pivot=4),
            dict(nums=[3, 3, 3, 5, 1], pivot=3),
            dict(nums=[1, 2, 3, 4, 5, 6, 7, 8], pivot=0),
            dict(nums=[-5, 10, -5, 10, 10, -5, -5, 0], pivot=0),
            dict(nums=[2, 9, 2, 9, 9, 9, 2, 2, 2, 9], pivot=5),
            dict(nums=[(i * 37) % 11 for i in range(40)], pivot=5),
        ],
    ),
    dict(
        id=90002,
        difficulty="medium",
        signature="def countSameDigitSetPairs(self, nums: List[int]) -> int:",
        statement="""
        You are given an array of non-negative integers nums.
        Two numbers are digit-twins if the set of distinct decimal digits used to write them is the same. For example, 1221 and 21 are digit-twins (both use exactly the digits {1, 2}), while 120 and 12 are not.
        Return the number of index pairs (i, j) with i < j such that nums[i] and nums[j] are digit-twins.
        """,
        examples=[
            (dict(nums=[12, 21, 1221, 3, 33]), "The pairs are (12,21), (12,1221), (21,1221) and (3,33)."),
            (dict(nums=[10, 1, 100]), "10 and 100 both use the digits {0, 1}; 1 uses only {1}."),
        ],
        constraints=["1 <= nums.length <= 10^5", "0 <= nums[i] <= 10^9"],
        solution="""
        class Solution:
            def countSameDigitSetPairs(self, nums: List[int]) -> int:
                seen = Counter()
                total = 0
                for x in nums:
                    key = frozenset(str(x))
                    total += seen[key]
                    seen[key] += 1
                return total
        """,
        tests=[
            dict(nums=[7]),
            dict(nums=[0, 0, 0]),
            dict(nums=[123, 321, 231, 132, 4]),
            dict(nums=[5, 55, 555, 5555, 50]),
            dict(nums=[1000000000, 10, 1, 101, 110, 11]),
            dict(nums=[98, 89, 988, 899, 9, 8]),
            dict(nums=[i * i for i in range(60)]),
        ],
    ),
    dict(
        id=90003,
        difficulty="medium",
        signature="def rotationGroupSizes(self, words: List[str]) -> List[int]:",
        statement="""
        A rotation of a string moves some number of its leading characters, in order, to its end. For example, the rotations of "abc" are "abc", "bca" and "cab".
        You are given an array of lowercase strings words. Put two words in the same group when one is a rotation of the other (this relation is an equivalence, so the groups are well defined; equal words are in the same group).
        Return the sizes of all groups, sorted in non-increasing order.
        """,
        examples=[
            (dict(words=["abc", "bca", "cab", "acb", "ab", "ba"]), "The groups are {abc, bca, cab}, {ab, ba} and {acb}."),
            (dict(words=["aa", "aa", "a"]), None),
        ],
        constraints=["1 <= words.length <= 1000", "1 <= words[i].length <= 50", "words[i] consists of lowercase English letters."],
        solution="""
        class Solution:
            def rotationGroupSizes(self, words: List[str]) -> List[int]:
                groups = Counter()
                for w in words:
                    key = min(w[i:] + w[:i] for i in range(len(w)))
                    groups[key] += 1
                return sorted(groups.values(), reverse=True)
        """,
        tests=[
            dict(words=["z"]),
            dict(words=["ab", "cd", "ef"]),
            dict(words=["abab", "baba", "abba", "bbaa", "aabb", "baab"]),
            dict(words=["xyz", "yzx", "zxy", "xzy", "zyx", "yxz"]),
            dict(words=["aab", "aba", "baa", "abb", "bba", "bab", "aab"]),
            dict(words=["leet", "tlee", "etle", "eetl", "lete"]),
        ],
    ),
    dict(
        id=90004,
        difficulty="medium",
        signature="def countSubarraysWithRemainder(self, nums: List[int], k: int, r: int) -> int:",
        statement="""
        You are given an integer array nums (which may contain negative values) and two integers k and r with 0 <= r < k.
        Return the number of non-empty contiguous subarrays whose sum leaves remainder r when divided by k. The remainder is always taken in the range [0, k - 1], also for negative sums (for example, -1 leaves remainder 2 when divided by 3).
        """,
        examples=[
            (dict(nums=[1, 2, 3], k=3, r=0), "The subarrays [3], [1,2] and [1,2,3] have sums divisible by 3."),
            (dict(nums=[-1, 4], k=5, r=4), "[-1] has sum -1 and [4] has sum 4; both leave remainder 4, while [-1,4] has sum 3."),
        ],
        constraints=["1 <= nums.length <= 10^5", "-10^4 <= nums[i] <= 10^4", "1 <= k <= 10^4", "0 <= r < k"],
        solution="""
        class Solution:
            def countSubarraysWithRemainder(self, nums: List[int], k: int, r: int) -> int:
                seen = Counter({0: 1})
                prefix = 0
                total = 0
                for x in nums:
                    prefix = (prefix + x) % k
                    total += seen[(prefix - r) % k]
                    seen[prefix] += 1
                return total
        """,
        tests=[
            dict(nums=[5], k=1, r=0),
            dict(nums=[4], k=5, r=3),
            dict(nums=[2, -2, 2, -2], k=4, r=0),
            dict(nums=[7, 7, 7, 7, 7], k=7, r=0),
            dict(nums=[-3, -6, 9, 1, 0, 2], k=4, r=1),
            dict(nums=[(i * 31) % 17 - 8 for i in range(50)], k=6, r=5),
        ],
    ),
    dict(
        id=90005,
        difficulty="medium",
        signature="def longestStepChain(self, nums: List[int], d: int) -> int:",
        statement="""
        You are given an integer array nums and a positive integer d.
        A step chain is a sequence of values x, x + d, x + 2d, ..., x + (m - 1)d in which every value occurs somewhere in nums (in any position). Its length is m.
        Return the length of the longest step chain. Repeated values in nums count only once.
        """,
        examples=[
            (dict(nums=[9, 1, 5, 3, 7, 4], d=2), "1, 3, 5, 7, 9 is a step chain of length 5."),
            (dict(nums=[10, 20, 31], d=10), None),
        ],
        constraints=["1 <= nums.length <= 10^5", "-10^9 <= nums[i] <= 10^9", "1 <= d <= 10^9"],
        solution="""
        class Solution:
            def longestStepChain(self, nums: List[int], d: int) -> int:
                values = set(nums)
                best = 0
                for x in values:
                    if x - d in values:
                        continue
                    length = 1
                    while x + length * d in values:
                        length += 1
                    best = max(best, length)
                return best
        """,
        tests=[
            dict(nums=[42], d=5),
            dict(nums=[3, 3, 3], d=1),
            dict(nums=[1, 2, 3, 4, 5, 6], d=1),
            dict(nums=[1, 2, 3, 4, 5, 6], d=3),
            dict(nums=[-6, -3, 0, 3, 6, 100, 103], d=3),
            dict(nums=[1, 1000000000, -1000000000, 0], d=1000000000),
            dict(nums=[(i * 7) % 50 for i in range(0, 120, 3)], d=7),
        ],
    ),
]
