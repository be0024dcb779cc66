"""Union-find and tries: problems 90044-90049."""

PROBLEMS = [
    dict(
        id=90044,
        difficulty="medium",
        signature="def componentsAfterEachLink(self, n: int, links: List[List[int]]) -> List[int]:",
        statement="""
        There are n isolated computers numbered 0 to n - 1. The cables in links are plugged in one at a time; links[i] = [u, v] connects computers u and v in both directions.
        Return an array whose i-th value is the number of connected groups of computers right after the i-th cable is plugged in.
        """,
        examples=[
            (dict(n=5, links=[[0, 1], [1, 2], [0, 2], [3, 4]]), "The third cable joins two computers that are already connected."),
            (dict(n=2, links=[[1, 1]]), "A cable from a computer to itself changes nothing."),
        ],
        constraints=["1 <= n <= 10^5", "1 <= links.length <= 10^5", "0 <= u, v < n"],
        solution="""
        class Solution:
            def componentsAfterEachLink(self, n: int, links: List[List[int]]) -> List[int]:
                parent = list(range(n))

                def find(x: int) -> int:
                    while parent[x] != x:
                        parent[x] = parent[parent[x]]
                        x = parent[x]
                    return x

                groups = n
                result = []
                for u, v in links:
                    ru, rv = find(u), find(v)
                    if ru != rv:
                        parent[ru] = rv
                        groups -= 1
                    result.append(groups)
                return result
        """,
        tests=[
            dict(n=1, links=[[0, 0]]),
            dict(n=3, links=[[0, 1], [0, 1], [1, 0]]),
            dict(n=4, links=[[0, 1], [2, 3], [1, 2]]),
            dict(n=6, links=[[5, 4], [4, 3], [3, 2], [2, 1], [1, 0]]),
            dict(n=7, links=[[0, 6], [1, 5], [2, 4], [6, 5], [4, 3], [3, 0]]),
            dict(n=10, links=[[(i * 3) % 10, (i * 7 + 2) % 10] for i in range(8)]),
        ],
    ),
    dict(
        id=90045,
        difficulty="medium",
        signature="def lastCycleEdge(self, edges: List[List[int]]) -> List[int]:",
        statement="""
        An undirected graph with nodes 1 to n started as a tree, and then one extra edge between two different nodes was added, so it now has n edges, given in edges as [u, v].
        Return an edge whose removal turns the graph back into a tree. If several edges qualify, return the one that appears last in edges.
        """,
        examples=[
            (dict(edges=[[1, 2], [1, 3], [2, 3]]), None),
            (dict(edges=[[1, 2], [2, 3], [3, 4], [1, 4], [1, 5]]), "Any edge of the cycle 1-2-3-4 works; [1,4] appears last among them."),
        ],
        constraints=["3 <= n == edges.length <= 1000", "1 <= u < v <= n", "There are no repeated edges and the graph is connected."],
        solution="""
        class Solution:
            def lastCycleEdge(self, edges: List[List[int]]) -> List[int]:
                parent = list(range(len(edges) + 1))

                def find(x: int) -> int:
                    while parent[x] != x:
                        parent[x] = parent[parent[x]]
                        x = parent[x]
                    return x

                for u, v in edges:
                    ru, rv = find(u), find(v)
                    if ru == rv:
                        return [u, v]
                    parent[ru] = rv
                return []
        """,
        tests=[
            dict(edges=[[1, 2], [2, 3], [1, 3]]),
            dict(edges=[[2, 3], [1, 2], [1, 3]]),
            dict(edges=[[1, 4], [3, 4], [1, 3], [1, 2], [4, 5]]),
            dict(edges=[[1, 5], [3, 4], [3, 5], [4, 5], [2, 4]]),
            dict(edges=[[1, 2], [2, 3], [3, 4], [4, 5], [5, 6], [1, 6]]),
            dict(edges=[[3, 7], [1, 4], [2, 8], [1, 6], [7, 9], [6, 10], [1, 7], [2, 3], [8, 9], [5, 9]]),
        ],
    ),
    dict(
        id=90046,
        difficulty="medium",
        signature="def consistentFacts(self, facts: List[str]) -> bool:",
        statement="""
        Each string in facts has length 4 and the form "x==y" or "x!=y", where x and y are lowercase letters standing for unknown values.
        Return true if some assignment of values to letters makes every fact true, and false otherwise.
        """,
        examples=[
            (dict(facts=["a==b", "b==c", "a!=c"]), "a, b and c must be equal, contradicting a!=c."),
            (dict(facts=["a==b", "c!=d"]), None),
        ],
        constraints=["1 <= facts.length <= 500", "facts[i].length == 4", "facts[i][1:3] is \"==\" or \"!=\""],
        solution="""
        class Solution:
            def consistentFacts(self, facts: List[str]) -> bool:
                parent = {c: c for c in ascii_lowercase}

                def find(x: str) -> str:
                    while parent[x] != x:
                        parent[x] = parent[parent[x]]
                        x = parent[x]
                    return x

                for f in facts:
                    if f[1] == "=":
                        parent[find(f[0])] = find(f[3])
                return all(find(f[0]) != find(f[3]) for f in facts if f[1] == "!")
        """,
        tests=[
            dict(facts=["a!=a"]),
            dict(facts=["a==a"]),
            dict(facts=["b!=a", "a!=b"]),
            dict(facts=["a==b", "c==d", "b==d", "a!=c"]),
            dict(facts=["a==b", "c==d", "e==f", "a!=f", "c!=e"]),
            dict(facts=["x==y", "y==z", "z==w", "w!=v", "v==u", "u!=x"]),
        ],
    ),
    dict(
        id=90047,
        difficulty="medium",
        signature="def shortenWithStems(self, stems: List[str], sentence: str) -> str:",
        statement="""
        You are given a list of stems and a sentence of words separated by single spaces. Replace every word that starts with at least one stem by the shortest stem it starts with; leave other words unchanged.
        Return the resulting sentence.
        """,
        examples=[
            (dict(stems=["cat", "ba", "rat"], sentence="the cattle was rattled by the battery"), "\"cattle\" becomes \"cat\", \"rattled\" becomes \"rat\", and \"battery\" becomes \"ba\"."),
            (dict(stems=["a", "b"], sentence="car bus abc"), None),
        ],
        constraints=["1 <= stems.length <= 1000", "1 <= stems[i].length <= 100", "1 <= sentence.length <= 10^6", "All words and stems consist of lowercase English letters."],
        solution="""
        class Solution:
            def shortenWithStems(self, stems: List[str], sentence: str) -> str:
                trie = {}
                for stem in stems:
                    node = trie
                    for ch in stem:
                        node = node.setdefault(ch, {})
                    node["$"] = stem

                def shorten(word: str) -> str:
                    node = trie
                    for ch in word:
                        if ch not in node:
                            return word
                        node = node[ch]
                        if "$" in node:
                            return node["$"]
                    return word

                return " ".join(shorten(w) for w in sentence.split(" "))
        """,
        tests=[
            dict(stems=["x"], sentence="y"),
            dict(stems=["abc", "ab", "a"], sentence="abcd abc ab a b"),
            dict(stems=["long"], sentence="lon long longer"),
            dict(stems=["ca", "cab", "c"], sentence="cabbage cab call"),
            dict(stems=["pre", "prefix", "su", "suf"], sentence="prefix suffix presto sun fix"),
            dict(stems=["zz", "z", "zzz"], sentence="zzzz azz"),
        ],
    ),
    dict(
        id=90048,
        difficulty="medium",
        signature="def countPrefixPairs(self, words: List[str]) -> int:",
        statement="""
        Given an array of strings words, return the number of index pairs (i, j) with i < j such that one of words[i], words[j] is a prefix of the other. A word is a prefix of itself, so equal words form such a pair.
        """,
        examples=[
            (dict(words=["a", "ab", "abc", "b"]), "The pairs are (a,ab), (a,abc) and (ab,abc)."),
            (dict(words=["go", "go", "gone"]), None),
        ],
        constraints=["1 <= words.length <= 10^4", "1 <= words[i].length <= 50", "words[i] consists of lowercase English letters."],
        solution="""
        class Solution:
            def countPrefixPairs(self, words: List[str]) -> int:
                # Each trie node stores [children, words ending here, words passing through].
                root = [{}, 0, 0]
                total = 0
                for w in words:
                    node = root
                    for ch in w:
                        node = node[0].setdefault(ch, [{}, 0, 0])
                        total += node[1]  # earlier words that are proper or equal prefixes
                        node[2] += 1
                    total += node[2] - 1 - node[1]  # earlier words that extend w strictly
                    node[1] += 1
                return total
        """,
        tests=[
            dict(words=["x"]),
            dict(words=["x", "y", "z"]),
            dict(words=["aaa", "aa", "a"]),
            dict(words=["a", "a", "a"]),
            dict(words=["abc", "ab", "abd", "abcd", "b", "bc"]),
            dict(words=["pre", "prefix", "prefixes", "pro", "p", "prefix"]),
        ],
    ),
    dict(
        id=90049,
        difficulty="medium",
        signature="def largestPairXor(self, nums: List[int]) -> int:",
        statement="""
        Given an array of non-negative integers nums, return the largest value of nums[i] XOR nums[j] over all index pairs with 0 <= i <= j < nums.length.
        """,
        examples=[
            (dict(nums=[3, 10, 5, 25, 2, 8]), "5 XOR 25 = 28."),
            (dict(nums=[6]), "The only pair is (0, 0), and 6 XOR 6 = 0."),
        ],
        constraints=["1 <= nums.length <= 2 * 10^5", "0 <= nums[i] < 2^31"],
        solution="""
        class Solution:
            def largestPairXor(self, nums: List[int]) -> int:
                best = 0
                for bit in range(30, -1, -1):
                    want = best | (1 << bit)
                    prefixes = {x >> bit for x in nums}
                    if any((want >> bit) ^ p in prefixes for p in prefixes):
                        best = want
                return best
        """,
        tests=[
            dict(nums=[0]),
            dict(nums=[0, 0, 0]),
            dict(nums=[1, 2]),
            dict(nums=[8, 10, 2]),
            dict(nums=[2147483647, 0, 1]),
            dict(nums=[14, 70, 53, 83, 49, 91, 36, 80, 92, 51, 66, 70]),
            dict(nums=[(i * 2654435761) % 1000003 for i in range(50)]),
        ],
    ),
]
