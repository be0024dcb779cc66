"""Strings: problems 90006-90010."""

PROBLEMS = [
    dict(
        id=90006,
        difficulty="medium",
        signature="def expandPattern(self, s: str) -> str:",
        statement="""
        A compressed pattern is built from lowercase letters, single digits 2-9 and parentheses:
        - a letter stands for itself;
        - a letter directly followed by a digit d stands for that letter repeated d times;
        - a parenthesised pattern (P) stands for the expansion of P, and if it is directly followed by a digit d, for that expansion repeated d times;
        - a sequence of parts stands for the concatenation of their expansions.
        Given a valid compressed pattern s, return its expansion.
        """,
        examples=[
            (dict(s="a3(bc)2"), "a3 becomes aaa and (bc)2 becomes bcbc."),
            (dict(s="(x(y2)3)2z"), "y2 is yy, (yy)3 with x in front is xyyyyyy, and that is repeated twice before z."),
        ],
        constraints=[
            "1 <= s.length <= 100",
            "s is a valid compressed pattern; every digit follows a letter or a closing parenthesis.",
            "The expansion has at most 10^4 characters.",
        ],
        solution="""
        class Solution:
            def expandPattern(self, s: str) -> str:
                stack = [[]]
                for ch in s:
                    if ch == "(":
                        stack.append([])
                    elif ch == ")":
                        inner = "".join(stack.pop())
                        stack[-1].append(inner)
                    elif ch.isdigit():
                        stack[-1][-1] = stack[-1][-1] * int(ch)
                    else:
                        stack[-1].append(ch)
                return "".join(stack[0])
        """,
        tests=[
            dict(s="q"),
            dict(s="ab9"),
            dict(s="(ab)"),
            dict(s="((a2)2)2"),
            dict(s="x(y)z2(w3v)2"),
            dict(s="m(n(o(p2)2)2)2"),
            dict(s="(abc)9(d)2e"),
        ],
    ),
    dict(
        id=90007,
        difficulty="medium",
        signature="def longestMirrorSubstring(self, s: str) -> int:",
        statement="""
        A string is a mirror string if it reads the same from left to right and from right to left.
        Given a string s, return the length of its longest substring that is a mirror string.
        """,
        examples=[
            (dict(s="xabacabay"), "\"abacaba\" is a mirror string of length 7."),
            (dict(s="abcd"), "Every single character is a mirror string."),
        ],
        constraints=["1 <= s.length <= 1000", "s consists of lowercase English letters and digits."],
        solution="""
        class Solution:
            def longestMirrorSubstring(self, s: str) -> int:
                n = len(s)
                best = 0
                for center in range(2 * n - 1):
                    lo, hi = center // 2, (center + 1) // 2
                    while lo >= 0 and hi < n and s[lo] == s[hi]:
                        lo -= 1
                        hi += 1
                    best = max(best, hi - lo - 1)
                return best
        """,
        tests=[
            dict(s="z"),
            dict(s="zz"),
            dict(s="abba"),
            dict(s="aaaaaaa"),
            dict(s="12321xy4554yx"),
            dict(s="forgeeksskeegfor"),
            dict(s="ab" * 30 + "c"),
        ],
    ),
    dict(
        id=90008,
        difficulty="medium",
        signature="def minCopiesForSubsequence(self, source: str, target: str) -> int:",
        statement="""
        You may write the string source several times in a row, producing source + source + ... + source.
        Return the minimum number of copies you need so that target is a subsequence of the result, or -1 if no number of copies works.
        A subsequence is obtained by deleting zero or more characters without changing the order of the rest.
        """,
        examples=[
            (dict(source="abc", target="cab"), "With \"abcabc\", take c from the first copy and a, b from the second."),
            (dict(source="ab", target="abz"), "z does not occur in source."),
        ],
        constraints=["1 <= source.length, target.length <= 10^4", "Both strings consist of lowercase English letters."],
        solution="""
        class Solution:
            def minCopiesForSubsequence(self, source: str, target: str) -> int:
                where = defaultdict(list)
                for i, ch in enumerate(source):
                    where[ch].append(i)
                copies, pos = 1, 0
                for ch in target:
                    if ch not in where:
                        return -1
                    idx = bisect_left(where[ch], pos)
                    if idx == len(where[ch]):
                        copies += 1
                        idx = 0
                    pos = where[ch][idx] + 1
                return copies
        """,
        tests=[
            dict(source="a", target="aaaa"),
            dict(source="abc", target="abc"),
            dict(source="abc", target="cba"),
            dict(source="xyz", target="xzyxz"),
            dict(source="aab", target="bbb"),
            dict(source="abcde", target="eeddccbbaa"),
            dict(source="q", target="r"),
        ],
    ),
    dict(
        id=90009,
        difficulty="medium",
        signature="def canSpaceApart(self, s: str, k: int) -> bool:",
        statement="""
        You are given a string s and a positive integer k.
        Decide whether the characters of s can be rearranged so that any two equal characters stand at least k positions apart, that is, if positions i < j hold the same character then j - i >= k.
        Return true if such a rearrangement exists, and false otherwise.
        """,
        examples=[
            (dict(s="aabbcc", k=3), "\"abcabc\" works."),
            (dict(s="aaab", k=2), "Three a's need at least five positions to be two apart."),
        ],
        constraints=["1 <= s.length <= 10^5", "1 <= k <= 26", "s consists of lowercase English letters."],
        solution="""
        class Solution:
            def canSpaceApart(self, s: str, k: int) -> bool:
                heap = [(-c, ch) for ch, c in Counter(s).items()]
                heapify(heap)
                waiting = deque()
                placed = 0
                while heap or waiting:
                    if waiting and waiting[0][0] <= placed:
                        _, c, ch = waiting.popleft()
                        heappush(heap, (c, ch))
                    if not heap:
                        return False
                    c, ch = heappop(heap)
                    placed += 1
                    if c + 1 < 0:
                        waiting.append((placed - 1 + k, c + 1, ch))
                return True
        """,
        tests=[
            dict(s="a", k=5),
            dict(s="aa", k=1),
            dict(s="aa", k=2),
            dict(s="aabbcc", k=4),
            dict(s="aaabc", k=3),
            dict(s="aaadbbcc", k=2),
            dict(s="aaabbbcc", k=3),
            dict(s="abcdefghij" * 3, k=10),
        ],
    ),
    dict(
        id=90010,
        difficulty="medium",
        signature="def matchShape(self, shape: str, words: List[str]) -> List[str]:",
        statement="""
        A word has the same shape as a string shape when both have the same length and there is a one-to-one correspondence between letters such that replacing every letter of shape by its partner gives the word. Different letters of shape must map to different letters of the word.
        Given shape and an array words, return the words that have the same shape as shape, in their original order (duplicates kept).
        """,
        examples=[
            (dict(shape="abb", words=["xyy", "zzz", "mee", "abc", "pqq"]), "\"zzz\" fails because a and b would both map to z."),
            (dict(shape="abc", words=["aaa", "cab", "bb"]), None),
        ],
        constraints=["1 <= shape.length <= 20", "1 <= words.length <= 1000", "All strings consist of lowercase English letters."],
        solution="""
        class Solution:
            def matchShape(self, shape: str, words: List[str]) -> List[str]:
                def signature(w: str) -> tuple:
                    first = {}
                    return tuple(first.setdefault(ch, len(first)) for ch in w)

                want = signature(shape)
                return [w for w in words if len(w) == len(shape) and signature(w) == want]
        """,
        tests=[
            dict(shape="a", words=["b", "c", "dd"]),
            dict(shape="aa", words=["ab", "cc", "c"]),
            dict(shape="abab", words=["xyxy", "xxyy", "abab", "baba", "aaaa"]),
            dict(shape="abcba", words=["level", "radar", "refer", "civic", "abcde", "aaaaa"]),
            dict(shape="aabbc", words=["ddeef", "ddeee", "xxyyz", "xxyyz"]),
            dict(shape="zyx", words=[]),
        ],
    ),
]
