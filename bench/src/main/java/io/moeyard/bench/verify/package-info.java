/** Independent checks the bench runs on its own outputs before it reports a figure. */
package io.moeyard.bench.verify;
