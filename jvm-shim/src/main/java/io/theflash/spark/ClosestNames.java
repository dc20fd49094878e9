package io.theflash.spark;

import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeSet;

/**
 * The known names closest to a misspelt one, chosen exactly as the Python side chooses them
 * (store/errors.py closest_tables over Python's difflib): a misspelt {@code db.table} and the
 * JVM connector's catalog give the same "did you mean".
 */
final class ClosestNames {
  private ClosestNames() {}

  /**
   * The tables of {@code known} (db.table) closest to {@code name}, best first, at most
   * {@code n}: a misspelt table, or the table part alone when the database is left out or wrong.
   */
  static List<String> tables(String name, Collection<String> known, int n) {
    String want = name.trim().toLowerCase(Locale.ROOT);
    Map<String, String> byLower = new LinkedHashMap<>();
    for (String k : known) byLower.put(k.toLowerCase(Locale.ROOT), k);
    List<String> found = closeMatches(want, byLower.keySet(), n, 0.8);
    if (found.isEmpty()) {
      String bare = tail(want);
      TreeSet<String> tails = new TreeSet<>();
      for (String k : byLower.keySet()) tails.add(tail(k));
      for (String t : closeMatches(bare, tails, n, 0.6)) {
        for (String k : new TreeSet<>(byLower.keySet())) {
          if (tail(k).equals(t)) found.add(k);
        }
      }
    }
    List<String> out = new ArrayList<>();
    for (String k : found) {
      if (out.size() == n) break;
      out.add(byLower.get(k));
    }
    return out;
  }

  private static String tail(String name) {
    return name.substring(name.lastIndexOf('.') + 1);
  }

  /**
   * Python's {@code difflib.get_close_matches(word, possibilities, n, cutoff)}: the
   * possibilities whose similarity to {@code word} (Ratcliff/Obershelp, 2 * matched / total
   * characters) is at least {@code cutoff}, the most similar first (ties: the greater name first).
   */
  static List<String> closeMatches(String word, Collection<String> possibilities, int n, double cutoff) {
    List<Map.Entry<Double, String>> scored = new ArrayList<>();
    for (String x : possibilities) {
      double r = ratio(x, word);
      if (r >= cutoff) scored.add(new java.util.AbstractMap.SimpleEntry<>(r, x));
    }
    scored.sort(Comparator.<Map.Entry<Double, String>, Double>comparing(Map.Entry::getKey)
        .thenComparing(Map.Entry::getValue).reversed());
    List<String> out = new ArrayList<>();
    for (int i = 0; i < Math.min(n, scored.size()); i++) out.add(scored.get(i).getValue());
    return out;
  }

  /** {@code difflib.SequenceMatcher(None, a, b).ratio()} (no junk: names are short). */
  static double ratio(String a, String b) {
    int total = a.length() + b.length();
    return total == 0 ? 1.0 : 2.0 * matched(a, b) / total;
  }

  /** The characters of SequenceMatcher's matching blocks: the longest match, then each side of it. */
  private static int matched(String a, String b) {
    Map<Character, List<Integer>> b2j = new HashMap<>();
    for (int j = 0; j < b.length(); j++) b2j.computeIfAbsent(b.charAt(j), c -> new ArrayList<>()).add(j);
    int sum = 0;
    java.util.ArrayDeque<int[]> queue = new java.util.ArrayDeque<>();
    queue.push(new int[] {0, a.length(), 0, b.length()});
    while (!queue.isEmpty()) {
      int[] q = queue.pop();
      int alo = q[0], ahi = q[1], blo = q[2], bhi = q[3];
      int[] m = longestMatch(a, b2j, alo, ahi, blo, bhi);
      int i = m[0], j = m[1], k = m[2];
      if (k == 0) continue;
      sum += k;
      if (alo < i && blo < j) queue.push(new int[] {alo, i, blo, j});
      if (i + k < ahi && j + k < bhi) queue.push(new int[] {i + k, ahi, j + k, bhi});
    }
    return sum;
  }

  /** {@code find_longest_match}: the longest common run, the earliest in a, then in b. */
  private static int[] longestMatch(String a, Map<Character, List<Integer>> b2j, int alo, int ahi, int blo, int bhi) {
    int besti = alo, bestj = blo, bestsize = 0;
    Map<Integer, Integer> j2len = new HashMap<>();
    for (int i = alo; i < ahi; i++) {
      Map<Integer, Integer> next = new HashMap<>();
      for (int j : b2j.getOrDefault(a.charAt(i), java.util.Collections.<Integer>emptyList())) {
        if (j < blo) continue;
        if (j >= bhi) break;
        int k = j2len.getOrDefault(j - 1, 0) + 1;
        next.put(j, k);
        if (k > bestsize) {
          besti = i - k + 1;
          bestj = j - k + 1;
          bestsize = k;
        }
      }
      j2len = next;
    }
    return new int[] {besti, bestj, bestsize};
  }
}
