package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * Every native method of {@link NativeKernels} is bound to a symbol of the library, and without a
 * driver every CUDA-touching one fails with an exception, never a crash. Calls each native with
 * zero / null arguments, so it runs only where no driver exists (here, CI): with a driver, null
 * device pointers would be dereferenced.
 */
class NativeBindingTest {

  @Test
  void everyNativeIsBoundAndFailsCleanlyWithoutADriver() throws Exception {
    NativeTestSupport.requireLibrary();
    Assumptions.assumeTrue(NativeKernels.driverProbe() != null, "a driver is installed here");
    List<String> bound = new ArrayList<>();
    for (Method m : NativeKernels.class.getDeclaredMethods()) {
      if (!Modifier.isNative(m.getModifiers())) {
        continue;
      }
      Object[] args = new Object[m.getParameterCount()];
      Class<?>[] types = m.getParameterTypes();
      for (int i = 0; i < args.length; i++) {
        args[i] = types[i] == int.class ? (Object) 0
            : types[i] == long.class ? (Object) 0L
            : types[i] == boolean.class ? (Object) false
            : types[i] == float.class ? (Object) 0f
            : null;
      }
      try {
        m.invoke(null, args);
      } catch (InvocationTargetException e) {
        Throwable c = e.getCause();
        if (c instanceof UnsatisfiedLinkError) {
          fail("native method not bound: " + m.getName() + ": " + c);
        }
        if (!(c instanceof CudaException) && !(c instanceof IllegalArgumentException)) {
          fail(m.getName() + " threw " + c);
        }
        if (c instanceof CudaException) {
          assertTrue(c.getMessage().contains("cuda"), c.getMessage());
        }
      }
      bound.add(m.getName());
    }
    System.out.println("NativeBindingTest: " + bound.size() + " natives bound");
    assertTrue(bound.size() >= 50, "natives found: " + bound);
  }
}
